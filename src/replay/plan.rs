//! The planner: for each request, the latency and the fault to apply, decided from the
//! rules, the scenario and the latency spec with one seeded generator.
//!
//! Every protocol's server asks the same question — [`Planner::plan`] with a
//! [`RequestInfo`] and the index of the matched exchange — and applies the [`Plan`] it gets.
//! All random choices come from one ChaCha generator behind one lock, so a run with the
//! same seed and the same request order makes the same choices, request for request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::faults::Fault;
use super::latency::{self, LatencySpec, Pacing, RecordedTiming};
use super::rules::{self, ConfigError, RequestInfo, Rule};
use super::scenario::{self, Scenario};
use crate::model::Exchange;

/// Everything that can be changed live through the admin API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub latency: LatencySpec,
    pub scenario: Scenario,
    pub rules: Vec<Rule>,
    /// User presets from the config file.
    pub presets: BTreeMap<String, Scenario>,
}

/// What to do with one answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Wait this long before the first byte of the answer.
    pub first_byte: Duration,
    /// How to send the body (and, for streams, the server messages).
    pub pacing: Pacing,
    /// The fault to inject, if any. `SlowFirstByte` and `Drip` are already folded into
    /// `first_byte` and `pacing`; servers need not act on them again.
    pub fault: Option<Fault>,
    /// The name (or 1-based position) of the rule that fired.
    pub rule: Option<String>,
    /// For streams (gRPC, WebSocket): send the recorded server messages at their recorded
    /// offsets times this factor (`recorded`: 1, `scale:F`: F); `None`: as fast as allowed.
    pub message_scale: Option<f64>,
}

impl Plan {
    /// Answer at once, as recorded.
    pub const NOTHING: Plan = Plan {
        first_byte: Duration::ZERO,
        pacing: Pacing::Burst,
        fault: None,
        rule: None,
        message_scale: None,
    };
}

/// Why the admin API refused a change.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "unknown preset {0:?} (built in: production, staging, high-load, network-issues, chaos)"
    )]
    UnknownPreset(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

struct State {
    rng: ChaCha8Rng,
    settings: Settings,
    /// Per rule: matching calls seen, and how often it fired.
    calls: Vec<u64>,
    fired: Vec<u64>,
}

/// A recorded exchange's pace in 16 bytes (`u64::MAX`: not recorded), a fraction of
/// [`RecordedTiming`]'s size: the planner keeps one per recorded exchange.
#[derive(Clone, Copy)]
struct PackedTiming {
    first_byte_ns: u64,
    body_ns: u64,
}

impl PackedTiming {
    fn pack(t: RecordedTiming) -> PackedTiming {
        let ns = |d: Option<Duration>| {
            d.map_or(u64::MAX, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
            })
        };
        PackedTiming {
            first_byte_ns: ns(t.first_byte),
            body_ns: ns(t.body),
        }
    }

    fn unpack(self) -> RecordedTiming {
        let d = |n: u64| (n != u64::MAX).then(|| Duration::from_nanos(n));
        RecordedTiming {
            first_byte: d(self.first_byte_ns),
            body: d(self.body_ns),
        }
    }
}

/// Collects what the planner needs of each recorded exchange, one at a time in recorded
/// order (the order given to the matcher).
#[derive(Default)]
pub struct PlannerBuilder {
    timings: Vec<PackedTiming>,
    profiles: HashMap<String, Vec<Duration>>,
    /// Route template of each path seen with a first-byte delay: paths repeat, and making a
    /// template costs more than finding it here.
    templates: HashMap<String, String>,
}

impl PlannerBuilder {
    /// Adds recorded exchange `ex` (only its path and timings are read).
    pub fn push(&mut self, ex: &Exchange) {
        let t = RecordedTiming::from_timings(&ex.timings);
        self.timings.push(PackedTiming::pack(t));
        if let Some(d) = t.first_byte {
            let path = ex.request.path();
            let template = match self.templates.get(path) {
                Some(t) => t.clone(),
                None => {
                    let t = crate::vocab::route_template(path);
                    self.templates.insert(path.to_string(), t.clone());
                    t
                }
            };
            self.profiles.entry(template).or_default().push(d);
        }
    }

    /// The planner, starting with `settings` and `seed`.
    pub fn finish(self, settings: Settings, seed: u64) -> Planner {
        let n = settings.rules.len();
        Planner {
            seed,
            timings: self.timings,
            profiles: self.profiles,
            quick: RwLock::new(settings.clone()),
            headers_matter: rules_read_headers(&settings).into(),
            state: Mutex::new(State {
                rng: ChaCha8Rng::seed_from_u64(seed),
                settings,
                calls: vec![0; n],
                fired: vec![0; n],
            }),
        }
    }
}

/// Decides latency and faults. Thread-safe; cheap when nothing is configured.
pub struct Planner {
    seed: u64,
    timings: Vec<PackedTiming>,
    /// Recorded first-byte delays per route template, for `--latency profile`.
    profiles: HashMap<String, Vec<Duration>>,
    state: Mutex<State>,
    /// A copy of `state.settings` for the lock-free check that nothing applies (the common
    /// case: rules that do not match must not cost every request a trip through the mutex).
    /// Written only while `state` is locked.
    quick: RwLock<Settings>,
    /// Some rule matches on request headers: only then must a protocol hand the request's
    /// headers to the plan (building mf's header list from an HTTP/2 map costs an allocation
    /// per field on every call). Written only while `state` is locked.
    headers_matter: std::sync::atomic::AtomicBool,
}

/// True when a rule of `settings` looks at request headers.
fn rules_read_headers(settings: &Settings) -> bool {
    settings.rules.iter().any(|r| !r.matches.header.is_empty())
}

/// Counts for the stats endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct RuleStats {
    pub rule: String,
    pub calls: u64,
    pub fired: u64,
}

impl Planner {
    /// A planner for `exchanges` (the list given to the matcher, in the same order).
    pub fn new(exchanges: &[Exchange], settings: Settings, seed: u64) -> Planner {
        let mut b = PlannerBuilder::default();
        for ex in exchanges {
            b.push(ex);
        }
        b.finish(settings, seed)
    }

    /// The seed every random choice derives from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides what happens to `req`, answered by exchange `matched` (an index into the
    /// exchanges given to [`Planner::new`]; `None` when nothing matched).
    pub fn plan(&self, req: &RequestInfo<'_>, matched: Option<usize>) -> Plan {
        if self.nothing_applies(req) {
            return Plan::NOTHING;
        }
        let recorded = matched
            .and_then(|i| self.timings.get(i))
            .map(|t| t.unpack())
            .unwrap_or_default();
        let mut st = self.lock();
        let State {
            rng,
            settings,
            calls,
            fired,
        } = &mut *st;
        // Every rule that applies counts the call, so "the 3rd call to /pay" stays exact when
        // an earlier rule also matches; the first that fires wins.
        let mut winner: Option<usize> = None;
        for (i, rule) in settings.rules.iter().enumerate() {
            if rule.applies_to(req) {
                calls[i] += 1;
                if winner.is_none() && rule.fires(calls[i], rng) {
                    winner = Some(i);
                    fired[i] += 1;
                }
            }
        }
        let rule = winner.map(|i| &settings.rules[i]);
        let mut spec = settings.latency.clone();
        if let Some(mode) = rule.and_then(|r| r.latency.clone()) {
            spec.mode = mode;
        }
        let profile: &[Duration] = if spec.mode == latency::LatencyMode::Profile {
            self.profiles
                .get(&crate::vocab::route_template(req.path))
                .map_or(&[], Vec::as_slice)
        } else {
            &[]
        };
        let timing = latency::decide(&spec, recorded, profile, rng);
        let message_scale = match spec.mode {
            latency::LatencyMode::Recorded => Some(1.0),
            latency::LatencyMode::Scale(f) => Some(f),
            _ => None,
        };
        let mut plan = Plan {
            first_byte: timing.first_byte,
            pacing: timing.pacing,
            fault: None,
            rule: None,
            message_scale,
        };
        match (winner, rule) {
            (Some(i), Some(r)) => {
                plan.fault = r.fault.clone();
                plan.rule = Some(r.name.clone().unwrap_or_else(|| format!("#{}", i + 1)));
            }
            _ => {
                // Requests no rule claimed get the scenario.
                let effect = settings.scenario.decide(rng);
                if let Some(d) = effect.delay {
                    plan.first_byte = d;
                }
                plan.first_byte = plan.first_byte.mul_f64(effect.multiplier) + effect.extra;
                plan.fault = effect.fault;
            }
        }
        match &plan.fault {
            Some(Fault::SlowFirstByte { delay }) => plan.first_byte += *delay,
            Some(Fault::Drip { bandwidth }) => plan.pacing = Pacing::Bandwidth((*bandwidth).max(1)),
            _ => {}
        }
        plan
    }

    fn nothing_applies(&self, req: &RequestInfo<'_>) -> bool {
        let s = self.quick.read().unwrap_or_else(|p| p.into_inner());
        s.scenario.mode == scenario::Mode::Healthy
            && s.latency == LatencySpec::default()
            && !s.rules.iter().any(|r| r.applies_to(req))
    }

    /// Updates the settings and their lock-free copy together.
    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut st = self.lock();
        f(&mut st);
        self.headers_matter.store(
            rules_read_headers(&st.settings),
            std::sync::atomic::Ordering::Relaxed,
        );
        *self.quick.write().unwrap_or_else(|p| p.into_inner()) = st.settings.clone();
    }

    /// True when some rule matches on request headers, so a request's headers must be given
    /// to [`Planner::plan`]; otherwise an empty list plans the same.
    pub fn reads_headers(&self) -> bool {
        self.headers_matter
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A copy of the live settings.
    pub fn settings(&self) -> Settings {
        self.lock().settings.clone()
    }

    /// Replaces the scenario.
    pub fn set_scenario(&self, s: Scenario) {
        self.update(|st| st.settings.scenario = s);
    }

    /// Replaces the latency spec.
    pub fn set_latency(&self, l: LatencySpec) {
        self.update(|st| st.settings.latency = l);
    }

    /// Replaces the rules; their counters start from zero.
    ///
    /// # Errors
    /// A rule that could never fire.
    pub fn set_rules(&self, r: Vec<Rule>) -> Result<(), PlanError> {
        rules::check_rules(&r)?;
        self.update(|st| {
            st.calls = vec![0; r.len()];
            st.fired = vec![0; r.len()];
            st.settings.rules = r;
        });
        Ok(())
    }

    /// Switches to a preset: a user preset from the config file, or a built-in one.
    ///
    /// # Errors
    /// An unknown name.
    pub fn apply_preset(&self, name: &str) -> Result<Scenario, PlanError> {
        let s = self
            .settings()
            .presets
            .get(name)
            .cloned()
            .or_else(|| scenario::preset(name))
            .ok_or_else(|| PlanError::UnknownPreset(name.to_string()))?;
        self.set_scenario(s.clone());
        Ok(s)
    }

    /// True with probability `p`, drawn from the seeded generator: for per-message decisions
    /// such as [`Fault::WsDropFrames`].
    pub fn chance(&self, p: f64) -> bool {
        use rand::Rng;
        p > 0.0 && self.lock().rng.random::<f64>() < p
    }

    /// Starts the rule counters over and reseeds the generator, so the sequence of decisions
    /// replays from the beginning.
    pub fn reset(&self) {
        let mut st = self.lock();
        st.calls.iter_mut().for_each(|c| *c = 0);
        st.fired.iter_mut().for_each(|c| *c = 0);
        st.rng = ChaCha8Rng::seed_from_u64(self.seed);
    }

    /// Per-rule counts.
    pub fn rule_stats(&self) -> Vec<RuleStats> {
        let st = self.lock();
        st.settings
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| RuleStats {
                rule: r.name.clone().unwrap_or_else(|| format!("#{}", i + 1)),
                calls: st.calls[i],
                fired: st.fired[i],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn get(path: &str) -> RequestInfo<'_> {
        RequestInfo {
            protocol: Protocol::Http11,
            method: "GET",
            path,
            grpc_method: None,
            headers: &[],
        }
    }

    fn settings(yaml: &str) -> Settings {
        let c = rules::ConfigFile::parse(yaml).unwrap();
        Settings {
            rules: c.rules,
            ..Settings::default()
        }
    }

    #[test]
    fn nothing_configured_means_nothing_happens() {
        let p = Planner::new(&[], Settings::default(), 1);
        assert_eq!(p.plan(&get("/"), None), Plan::NOTHING);
    }

    #[test]
    fn nth_counts_only_matching_calls() {
        let p = Planner::new(
            &[],
            settings("rules:\n  - {name: pay, match: {path: /pay}, nth: 3, fault: reset}\n"),
            1,
        );
        let mut faults = vec![];
        for path in ["/pay", "/other", "/pay", "/other", "/pay", "/pay"] {
            faults.push(p.plan(&get(path), None).fault);
        }
        assert_eq!(
            faults,
            vec![None, None, None, None, Some(Fault::Reset), None]
        );
        assert_eq!(p.rule_stats()[0].calls, 4);
        p.reset();
        assert_eq!(p.rule_stats()[0].calls, 0);
    }

    #[test]
    fn seeded_runs_repeat_exactly() {
        let run = |seed| {
            let p = Planner::new(&[], Settings::default(), seed);
            p.apply_preset("chaos").unwrap();
            (0..200)
                .map(|_| p.plan(&get("/x"), None))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        let p = Planner::new(&[], Settings::default(), 42);
        p.apply_preset("chaos").unwrap();
        let first: Vec<_> = (0..50).map(|_| p.plan(&get("/x"), None)).collect();
        p.reset();
        let again: Vec<_> = (0..50).map(|_| p.plan(&get("/x"), None)).collect();
        assert_eq!(first, again);
    }

    #[test]
    fn rules_override_latency_and_fold_slow_faults() {
        let p = Planner::new(
            &[],
            settings("rules:\n  - {match: {path: /slow}, latency: fixed:30ms, fault: {slow_first_byte: {delay: 1s}}}\n  - {match: {path: /drip}, fault: {drip: {bandwidth: 10}}}\n"),
            1,
        );
        let slow = p.plan(&get("/slow"), None);
        assert_eq!(slow.first_byte, Duration::from_millis(1030));
        assert_eq!(slow.rule.as_deref(), Some("#1"));
        assert_eq!(p.plan(&get("/drip"), None).pacing, Pacing::Bandwidth(10));
        assert!(!p.chance(0.0) && p.chance(1.0));
        assert_eq!(p.plan(&get("/else"), None), Plan::NOTHING);
    }

    #[test]
    fn user_presets_win_over_built_in_names() {
        let mut s = Settings::default();
        s.presets.insert(
            "chaos".into(),
            Scenario {
                mode: scenario::Mode::Degraded,
                ..Scenario::default()
            },
        );
        let p = Planner::new(&[], s, 1);
        assert_eq!(
            p.apply_preset("chaos").unwrap().mode,
            scenario::Mode::Degraded
        );
        assert!(matches!(
            p.apply_preset("calm"),
            Err(PlanError::UnknownPreset(_))
        ));
    }
}
