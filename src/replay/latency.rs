//! Latency: how long to wait before the first byte of an answer and how fast to send its body.
//!
//! Decisions are pure (a spec, the recorded timings and an RNG in, durations out); the only
//! I/O here is [`paced_write`], which sleeps through `tokio::time` so tests run on a paused
//! clock and assert exact virtual delays.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::model::Timings;

/// How the delay before an answer's first byte is chosen (`--latency`).
#[derive(Clone, Debug, PartialEq)]
pub enum LatencyMode {
    /// Answer at once.
    None,
    /// The recorded time to first byte, and the recorded body pacing.
    Recorded,
    /// Always the same delay.
    Fixed(Duration),
    /// The recorded delays multiplied by a factor.
    Scale(f64),
    /// A delay drawn from the recorded distribution of the same route.
    Profile,
    /// A delay drawn uniformly from a range.
    Uniform(Duration, Duration),
}

/// Why a latency spec was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LatencyError {
    #[error(
        "unknown latency mode {0:?} (expected recorded, none, fixed:50ms, scale:2.5, profile or uniform:10ms..200ms)"
    )]
    Unknown(String),
    #[error("bad duration {0:?} (expected e.g. 50ms or 1s)")]
    Duration(String),
    #[error("bad factor {0:?} (expected a non-negative number)")]
    Factor(String),
    #[error("empty range {0:?}: the lower bound is above the upper")]
    Range(String),
}

/// Parses `50ms`, `1.5s`, `2m` (humantime syntax).
pub fn parse_duration(s: &str) -> Result<Duration, LatencyError> {
    humantime::parse_duration(s.trim()).map_err(|_| LatencyError::Duration(s.to_string()))
}

fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl FromStr for LatencyMode {
    type Err = LatencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        Ok(match (kind, arg) {
            ("none", "") => LatencyMode::None,
            ("recorded", "") => LatencyMode::Recorded,
            ("profile", "") => LatencyMode::Profile,
            ("fixed", a) => LatencyMode::Fixed(parse_duration(a)?),
            ("scale", a) => {
                let f: f64 = a
                    .trim()
                    .parse()
                    .map_err(|_| LatencyError::Factor(a.to_string()))?;
                if !f.is_finite() || f < 0.0 {
                    return Err(LatencyError::Factor(a.to_string()));
                }
                LatencyMode::Scale(f)
            }
            ("uniform", a) => {
                let (lo, hi) = a
                    .split_once("..")
                    .ok_or_else(|| LatencyError::Duration(a.to_string()))?;
                let (lo, hi) = (parse_duration(lo)?, parse_duration(hi)?);
                if lo > hi {
                    return Err(LatencyError::Range(a.to_string()));
                }
                LatencyMode::Uniform(lo, hi)
            }
            _ => return Err(LatencyError::Unknown(s.to_string())),
        })
    }
}

impl fmt::Display for LatencyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LatencyMode::None => f.write_str("none"),
            LatencyMode::Recorded => f.write_str("recorded"),
            LatencyMode::Profile => f.write_str("profile"),
            LatencyMode::Fixed(d) => write!(f, "fixed:{}", format_duration(*d)),
            LatencyMode::Scale(x) => write!(f, "scale:{x}"),
            LatencyMode::Uniform(a, b) => write!(
                f,
                "uniform:{}..{}",
                format_duration(*a),
                format_duration(*b)
            ),
        }
    }
}

impl Serialize for LatencyMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LatencyMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A latency mode with its jitter and bandwidth limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    pub mode: LatencyMode,
    /// Up to this much is added or removed at random (never below zero).
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub jitter: Option<Duration>,
    /// Bodies and stream messages are sent at most this fast (bytes per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<u64>,
}

impl Default for LatencySpec {
    fn default() -> Self {
        LatencySpec {
            mode: LatencyMode::None,
            jitter: None,
            bandwidth: None,
        }
    }
}

/// `Option<Duration>` as humantime text (`"5ms"`) in config files and the admin API.
pub(crate) mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(s.trim()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// What the recording says about one exchange's pace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordedTiming {
    /// From the end of the request to the first byte of the response.
    pub first_byte: Option<Duration>,
    /// From the first byte of the response to its last.
    pub body: Option<Duration>,
}

impl RecordedTiming {
    /// Extracts the pace from an exchange's timings.
    pub fn from_timings(t: &Timings) -> RecordedTiming {
        let first_byte = match (t.request_end_ns, t.response_first_byte_ns) {
            (Some(req), Some(first)) if req <= first => Some(Duration::from_nanos(first - req)),
            // A request end stamped after the answer began (the recorder stamps bodyless
            // requests when the exchange completes) says nothing: count from the start.
            (_, Some(first)) => Some(Duration::from_nanos(first)),
            _ => None,
        };
        let body = match (t.response_first_byte_ns, t.response_end_ns) {
            (Some(first), Some(end)) => Some(Duration::from_nanos(end.saturating_sub(first))),
            _ => None,
        };
        RecordedTiming { first_byte, body }
    }
}

/// How a body is sent once its first byte is due.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// All at once.
    Burst,
    /// At most this many bytes per second.
    Bandwidth(u64),
    /// Spread evenly over this long (the recorded pace of a body without a chunk table).
    Over(Duration),
    /// In the recorded chunks, each at its recorded offset after the answer's first byte
    /// times this factor. Only a body with a chunk table is sent so (see [`body_pacing`]);
    /// any other body given this pacing goes out at once.
    Chunks(f64),
}

/// The pacing of a body that has a recorded chunk table, given the plan's `pacing` and
/// `message_scale` (`Some` for `--latency recorded` and `scale:F`).
///
/// - A bandwidth limit (`--bandwidth`, a `drip` fault) was asked for explicitly: it wins.
/// - `recorded` and `scale:F` send the chunks at their offsets (times F).
/// - Otherwise a Server-Sent Events stream (`event_stream`) keeps its recorded pace, as gRPC
///   and WebSocket messages do, whatever the first-byte latency mode, unless
///   `stream_timing` is off (the user asked for `--latency none`); other bodies go as planned.
pub fn body_pacing(
    pacing: Pacing,
    message_scale: Option<f64>,
    event_stream: bool,
    stream_timing: bool,
) -> Pacing {
    match (pacing, message_scale) {
        (Pacing::Bandwidth(_), _) => pacing,
        (_, Some(f)) => Pacing::Chunks(f),
        (_, None) if event_stream && stream_timing => Pacing::Chunks(1.0),
        _ => pacing,
    }
}

/// The latency part of a plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub first_byte: Duration,
    pub pacing: Pacing,
}

/// Decides the delay and pacing for one answer. `profile` holds the recorded first-byte
/// delays of the request's route (for [`LatencyMode::Profile`]).
pub fn decide(
    spec: &LatencySpec,
    recorded: RecordedTiming,
    profile: &[Duration],
    rng: &mut impl Rng,
) -> Timing {
    let base = match &spec.mode {
        LatencyMode::None => Duration::ZERO,
        LatencyMode::Recorded => recorded.first_byte.unwrap_or_default(),
        LatencyMode::Fixed(d) => *d,
        LatencyMode::Scale(f) => recorded.first_byte.unwrap_or_default().mul_f64(*f),
        LatencyMode::Profile => match profile.len() {
            0 => recorded.first_byte.unwrap_or_default(),
            n => profile[rng.random_range(0..n)],
        },
        LatencyMode::Uniform(lo, hi) => uniform(*lo, *hi, rng),
    };
    let first_byte = match spec.jitter {
        Some(j) if !j.is_zero() => {
            let delta = uniform(Duration::ZERO, j * 2, rng);
            (base + delta).saturating_sub(j)
        }
        _ => base,
    };
    let pacing = match (spec.bandwidth, &spec.mode) {
        (Some(bps), _) => Pacing::Bandwidth(bps.max(1)),
        (None, LatencyMode::Recorded) => recorded
            .body
            .filter(|d| !d.is_zero())
            .map_or(Pacing::Burst, Pacing::Over),
        (None, LatencyMode::Scale(f)) => recorded
            .body
            .map(|d| d.mul_f64(*f))
            .filter(|d| !d.is_zero())
            .map_or(Pacing::Burst, Pacing::Over),
        _ => Pacing::Burst,
    };
    Timing { first_byte, pacing }
}

/// A duration drawn uniformly from `lo..=hi` (microsecond resolution).
pub fn uniform(lo: Duration, hi: Duration, rng: &mut impl Rng) -> Duration {
    if hi <= lo {
        return lo;
    }
    let span = (hi - lo).as_micros() as u64;
    lo + Duration::from_micros(rng.random_range(0..=span))
}

/// How often a paced writer wakes up: small enough to look smooth to a client, large enough
/// that a slow body is not thousands of tiny writes.
const TICK: Duration = Duration::from_millis(50);

/// Writes `data` to `w` with `pacing`, sleeping through `tokio::time` between chunks.
/// `Bandwidth(b)` sends `b / 20` bytes per 50 ms tick; `Over(d)` splits the body into equal
/// chunks, one per tick, finishing after `d`. `Chunks` needs the chunk table, which `data`
/// alone does not carry (`timed::write` has it): here it is a burst.
///
/// # Errors
/// The writer's error (typically the client went away).
pub async fn paced_write<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    pacing: Pacing,
) -> std::io::Result<()> {
    let (chunk, tick) = match pacing {
        Pacing::Burst | Pacing::Chunks(_) => return w.write_all(data).await,
        Pacing::Bandwidth(bps) => {
            let per_tick = (bps as u128 * TICK.as_millis() / 1000) as usize;
            if per_tick == 0 {
                // Under 20 B/s: one byte at a time, as often as the limit allows.
                (1, Duration::from_secs_f64(1.0 / bps.max(1) as f64))
            } else {
                (per_tick, TICK)
            }
        }
        Pacing::Over(total) => {
            let ticks = (total.as_millis() / TICK.as_millis()).max(1) as usize;
            let chunk = data.len().div_ceil(ticks).max(1);
            let n = data.len().div_ceil(chunk).max(1) as u32;
            (chunk, total / n)
        }
    };
    let mut chunks = data.chunks(chunk).peekable();
    while let Some(c) = chunks.next() {
        w.write_all(c).await?;
        w.flush().await?;
        if chunks.peek().is_some() {
            tokio::time::sleep(tick).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn spec(s: &str) -> LatencySpec {
        LatencySpec {
            mode: s.parse().unwrap(),
            jitter: None,
            bandwidth: None,
        }
    }

    #[test]
    fn modes_parse_and_print_back() {
        for s in [
            "none",
            "recorded",
            "profile",
            "fixed:50ms",
            "scale:2.5",
            "uniform:10ms..200ms",
        ] {
            let m: LatencyMode = s.parse().unwrap();
            assert_eq!(m.to_string(), s);
        }
        assert_eq!(
            "fixed:1s".parse::<LatencyMode>().unwrap(),
            LatencyMode::Fixed(ms(1000))
        );
        assert!(matches!(
            "fast".parse::<LatencyMode>(),
            Err(LatencyError::Unknown(_))
        ));
        assert!(matches!(
            "fixed:soon".parse::<LatencyMode>(),
            Err(LatencyError::Duration(_))
        ));
        assert!(matches!(
            "scale:-1".parse::<LatencyMode>(),
            Err(LatencyError::Factor(_))
        ));
        assert!(matches!(
            "uniform:2s..1s".parse::<LatencyMode>(),
            Err(LatencyError::Range(_))
        ));
    }

    #[test]
    fn decisions_follow_the_mode() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let rec = RecordedTiming {
            first_byte: Some(ms(40)),
            body: Some(ms(100)),
        };
        assert_eq!(
            decide(&spec("none"), rec, &[], &mut rng),
            Timing {
                first_byte: ms(0),
                pacing: Pacing::Burst
            }
        );
        assert_eq!(
            decide(&spec("fixed:20ms"), rec, &[], &mut rng).first_byte,
            ms(20)
        );
        assert_eq!(
            decide(&spec("recorded"), rec, &[], &mut rng),
            Timing {
                first_byte: ms(40),
                pacing: Pacing::Over(ms(100))
            }
        );
        assert_eq!(
            decide(&spec("scale:2.5"), rec, &[], &mut rng),
            Timing {
                first_byte: ms(100),
                pacing: Pacing::Over(ms(250))
            }
        );
        for _ in 0..100 {
            let d = decide(&spec("uniform:10ms..20ms"), rec, &[], &mut rng).first_byte;
            assert!(d >= ms(10) && d <= ms(20), "{d:?}");
            let p = decide(&spec("profile"), rec, &[ms(1), ms(7)], &mut rng).first_byte;
            assert!(p == ms(1) || p == ms(7));
        }
        let jittered = LatencySpec {
            mode: LatencyMode::Fixed(ms(10)),
            jitter: Some(ms(5)),
            bandwidth: Some(1000),
        };
        for _ in 0..100 {
            let t = decide(&jittered, rec, &[], &mut rng);
            assert!(t.first_byte >= ms(5) && t.first_byte <= ms(15));
            assert_eq!(t.pacing, Pacing::Bandwidth(1000));
        }
    }

    #[test]
    fn same_seed_same_draws() {
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|_| {
                    decide(
                        &spec("uniform:0ms..1s"),
                        RecordedTiming::default(),
                        &[],
                        &mut rng,
                    )
                    .first_byte
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn recorded_timing_is_relative_to_request_end() {
        let t = Timings {
            request_end_ns: Some(1_000_000),
            response_first_byte_ns: Some(31_000_000),
            response_end_ns: Some(41_000_000),
        };
        assert_eq!(
            RecordedTiming::from_timings(&t),
            RecordedTiming {
                first_byte: Some(ms(30)),
                body: Some(ms(10))
            }
        );
        let late = Timings {
            request_end_ns: Some(50_000_000),
            response_first_byte_ns: Some(31_000_000),
            response_end_ns: None,
        };
        assert_eq!(RecordedTiming::from_timings(&late).first_byte, Some(ms(31)));
    }

    #[test]
    fn streamed_bodies_keep_their_pace_unless_told_otherwise() {
        let over = Pacing::Over(ms(5));
        // recorded / scale:F: every chunked body at its offsets (times F).
        assert_eq!(
            body_pacing(over, Some(1.0), false, true),
            Pacing::Chunks(1.0)
        );
        assert_eq!(
            body_pacing(Pacing::Burst, Some(2.0), false, false),
            Pacing::Chunks(2.0)
        );
        // Default or another mode: only event streams, unless --latency none.
        assert_eq!(
            body_pacing(Pacing::Burst, None, true, true),
            Pacing::Chunks(1.0)
        );
        assert_eq!(body_pacing(Pacing::Burst, None, true, false), Pacing::Burst);
        assert_eq!(body_pacing(Pacing::Burst, None, false, true), Pacing::Burst);
        // An explicit bandwidth limit wins.
        assert_eq!(
            body_pacing(Pacing::Bandwidth(10), Some(1.0), true, true),
            Pacing::Bandwidth(10)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bandwidth_paces_the_body_exactly() {
        let mut out = Vec::new();
        let start = tokio::time::Instant::now();
        // 1000 B/s → 50 B per 50 ms tick → 500 B take 10 chunks and 9 sleeps.
        paced_write(&mut out, &[7u8; 500], Pacing::Bandwidth(1000))
            .await
            .unwrap();
        assert_eq!(start.elapsed(), ms(450));
        assert_eq!(out.len(), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn recorded_pace_spreads_the_body_over_its_duration() {
        let mut out = Vec::new();
        let start = tokio::time::Instant::now();
        paced_write(&mut out, &[1u8; 1000], Pacing::Over(ms(200)))
            .await
            .unwrap();
        // 4 chunks of 250 B, 50 ms apart: the last leaves after 150 ms.
        assert_eq!(start.elapsed(), ms(150));
        assert_eq!(out, vec![1u8; 1000]);
        let start = tokio::time::Instant::now();
        paced_write(&mut out, b"x", Pacing::Burst).await.unwrap();
        assert_eq!(start.elapsed(), ms(0));
    }
}
