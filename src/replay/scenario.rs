//! Scenario modes (`healthy`, `degraded`, `error`, `chaos`) and the built-in presets.
//!
//! A scenario applies to every request that no rule claimed; it is what `--mode` and
//! `--preset` set and what `mf ctl mode` switches live.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::faults::Fault;
use super::latency::{self, opt_duration};

/// The scenario modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Answers as recorded (with the configured latency).
    #[default]
    Healthy,
    /// Every delay multiplied by `latency_multiplier`.
    Degraded,
    /// A share of requests (`error_rate`) fail with one of `error_status`.
    Error,
    /// Errors, timeouts, resets, random latency and latency spikes.
    Chaos,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown mode {s:?} (expected healthy, degraded, error or chaos)"))
    }
}

/// A scenario: a mode and its knobs. Knobs a mode does not use are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    pub mode: Mode,
    /// `degraded`: delays are multiplied by this.
    pub latency_multiplier: f64,
    /// `error`, `chaos`: share of requests answered with an error status.
    pub error_rate: f64,
    /// The statuses errors are drawn from.
    pub error_status: Vec<u16>,
    /// `chaos`: share of requests that hang until the client gives up.
    pub timeout_rate: f64,
    /// `chaos`: share of requests whose connection is reset.
    pub reset_rate: f64,
    /// `chaos`: every delay is drawn from `latency_min..latency_max` (when both are set).
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub latency_min: Option<Duration>,
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub latency_max: Option<Duration>,
    /// `chaos`: probability of a latency spike.
    pub spike_probability: f64,
    /// How long a spike adds.
    #[serde(with = "opt_duration", skip_serializing_if = "Option::is_none")]
    pub spike: Option<Duration>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            mode: Mode::Healthy,
            latency_multiplier: 1.0,
            error_rate: 0.0,
            error_status: vec![500, 502, 503],
            timeout_rate: 0.0,
            reset_rate: 0.0,
            latency_min: None,
            latency_max: None,
            spike_probability: 0.0,
            spike: None,
        }
    }
}

/// The names of the built-in presets.
pub const PRESETS: [&str; 5] = [
    "production",
    "staging",
    "high-load",
    "network-issues",
    "chaos",
];

/// The default knobs of a mode (what `--mode MODE` means without further flags).
pub fn for_mode(mode: Mode) -> Scenario {
    match mode {
        Mode::Healthy => Scenario::default(),
        Mode::Degraded => Scenario {
            mode,
            latency_multiplier: 3.0,
            ..Scenario::default()
        },
        Mode::Error => Scenario {
            mode,
            error_rate: 0.1,
            ..Scenario::default()
        },
        Mode::Chaos => Scenario {
            mode,
            error_rate: 0.1,
            timeout_rate: 0.02,
            reset_rate: 0.02,
            latency_min: Some(Duration::from_millis(10)),
            latency_max: Some(Duration::from_millis(500)),
            spike_probability: 0.05,
            spike: Some(Duration::from_secs(2)),
            ..Scenario::default()
        },
    }
}

/// A built-in preset by name.
pub fn preset(name: &str) -> Option<Scenario> {
    let ms = Duration::from_millis;
    Some(match name {
        // Real services fail a little and are a little slow.
        "production" => Scenario {
            mode: Mode::Chaos,
            error_rate: 0.001,
            error_status: vec![500, 503],
            latency_min: Some(ms(5)),
            latency_max: Some(ms(80)),
            spike_probability: 0.01,
            spike: Some(ms(500)),
            ..Scenario::default()
        },
        "staging" => Scenario {
            mode: Mode::Chaos,
            error_rate: 0.02,
            latency_min: Some(ms(20)),
            latency_max: Some(ms(300)),
            spike_probability: 0.02,
            spike: Some(ms(1500)),
            ..Scenario::default()
        },
        "high-load" => Scenario {
            mode: Mode::Chaos,
            error_rate: 0.05,
            error_status: vec![429, 503],
            timeout_rate: 0.01,
            latency_min: Some(ms(200)),
            latency_max: Some(ms(1500)),
            spike_probability: 0.05,
            spike: Some(ms(3000)),
            ..Scenario::default()
        },
        "network-issues" => Scenario {
            mode: Mode::Chaos,
            error_status: vec![502, 504],
            error_rate: 0.02,
            timeout_rate: 0.03,
            reset_rate: 0.05,
            latency_min: Some(ms(100)),
            latency_max: Some(ms(800)),
            spike_probability: 0.05,
            spike: Some(ms(2000)),
            ..Scenario::default()
        },
        "chaos" => for_mode(Mode::Chaos),
        _ => return None,
    })
}

/// What a scenario decided for one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effect {
    /// Replaces the latency decision when set.
    pub delay: Option<Duration>,
    /// Multiplies the latency decision.
    pub multiplier: f64,
    /// Added after the rest.
    pub extra: Duration,
    pub fault: Option<Fault>,
}

impl Scenario {
    /// Draws this request's fate. The number of draws depends only on the scenario, so a
    /// seeded run repeats exactly.
    pub fn decide(&self, rng: &mut impl Rng) -> Effect {
        let mut e = Effect {
            multiplier: 1.0,
            ..Effect::default()
        };
        match self.mode {
            Mode::Healthy => {}
            Mode::Degraded => e.multiplier = self.latency_multiplier.max(0.0),
            Mode::Error => e.fault = self.draw_error(rng),
            Mode::Chaos => {
                // One draw picks among reset, timeout and error so their rates add up.
                let x: f64 = rng.random();
                if x < self.reset_rate {
                    e.fault = Some(Fault::Reset);
                } else if x < self.reset_rate + self.timeout_rate {
                    e.fault = Some(Fault::Hang);
                } else if x < self.reset_rate + self.timeout_rate + self.error_rate {
                    e.fault = Some(self.error_fault(rng));
                }
                if let (Some(lo), Some(hi)) = (self.latency_min, self.latency_max) {
                    e.delay = Some(latency::uniform(lo, hi.max(lo), rng));
                }
                if self.spike_probability > 0.0 && rng.random::<f64>() < self.spike_probability {
                    e.extra = self.spike.unwrap_or(Duration::from_secs(1));
                }
            }
        }
        e
    }

    fn draw_error(&self, rng: &mut impl Rng) -> Option<Fault> {
        (self.error_rate > 0.0 && rng.random::<f64>() < self.error_rate)
            .then(|| self.error_fault(rng))
    }

    fn error_fault(&self, rng: &mut impl Rng) -> Fault {
        let code = match self.error_status.len() {
            0 => 500,
            n => self.error_status[rng.random_range(0..n)],
        };
        Fault::Status { code, body: None }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn every_preset_exists_and_modes_parse() {
        for p in PRESETS {
            assert!(preset(p).is_some(), "{p}");
        }
        assert!(preset("nope").is_none());
        assert_eq!("chaos".parse::<Mode>(), Ok(Mode::Chaos));
        assert!("calm".parse::<Mode>().is_err());
    }

    #[test]
    fn error_mode_fails_the_configured_share() {
        let s = Scenario {
            mode: Mode::Error,
            error_rate: 0.3,
            error_status: vec![502, 503],
            ..Scenario::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let faults: Vec<_> = (0..10_000)
            .filter_map(|_| s.decide(&mut rng).fault)
            .collect();
        assert!((2700..3300).contains(&faults.len()), "{}", faults.len());
        assert!(faults.iter().all(|f| matches!(
            f,
            Fault::Status {
                code: 502 | 503,
                ..
            }
        )));
    }

    #[test]
    fn healthy_and_degraded_inject_nothing() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            Scenario::default().decide(&mut rng),
            Effect {
                multiplier: 1.0,
                ..Effect::default()
            }
        );
        let d = Scenario {
            mode: Mode::Degraded,
            latency_multiplier: 3.0,
            ..Scenario::default()
        };
        assert_eq!(d.decide(&mut rng).multiplier, 3.0);
    }

    #[test]
    fn user_presets_read_from_yaml() {
        let s: Scenario =
            serde_norway::from_str("mode: error\nerror_rate: 0.5\nerror_status: [429]\n").unwrap();
        assert_eq!(s.error_status, vec![429]);
        assert_eq!(s.latency_multiplier, 1.0);
        assert!(serde_norway::from_str::<Scenario>("mode: error\nerror_rat: 0.5\n").is_err());
    }
}
