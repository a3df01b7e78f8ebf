//! `--fail-if` gates: `match<99%`, `p99>250ms`, `failed>0`, `differing>=1%`.

use std::fmt;
use std::str::FromStr;

use super::DiffError;

/// What a gate measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Metric {
    /// Share of exchanges that matched, in percent.
    MatchPercent,
    /// Exchanges that differed: a count, or a share in percent.
    Differing { percent: bool },
    /// Exchanges that failed (no answer): a count, or a share in percent.
    Failed { percent: bool },
    /// A percentile of the target's latency (50, 90, 95, 99, 99.9; 100 is the maximum), in ns.
    Latency(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// One parsed `--fail-if` condition: the run fails when it holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Gate {
    text: String,
    pub(super) metric: Metric,
    op: Op,
    /// Percent, count or nanoseconds, as the metric says.
    limit: f64,
}

/// The figures of a run that gates look at.
pub(super) trait Figures {
    fn total(&self) -> u64;
    fn matched(&self) -> u64;
    fn differing(&self) -> u64;
    fn failed(&self) -> u64;
    /// The target's latency at percentile `p`, in ns; `None` when nothing was timed.
    fn latency_now(&self, p: f64) -> Option<u64>;
}

impl Gate {
    /// The measured value this gate compares, as text with its unit, if there is one.
    pub(super) fn measured(&self, f: &dyn Figures) -> Option<f64> {
        let share = |n: u64| {
            if f.total() == 0 {
                0.0
            } else {
                n as f64 * 100.0 / f.total() as f64
            }
        };
        Some(match self.metric {
            Metric::MatchPercent if f.total() == 0 => 100.0,
            Metric::MatchPercent => share(f.matched()),
            Metric::Differing { percent: true } => share(f.differing()),
            Metric::Differing { percent: false } => f.differing() as f64,
            Metric::Failed { percent: true } => share(f.failed()),
            Metric::Failed { percent: false } => f.failed() as f64,
            Metric::Latency(p) => f.latency_now(p)? as f64,
        })
    }

    /// Why the gate fails the run, or `None` when it passes.
    pub(super) fn check(&self, f: &dyn Figures) -> Option<String> {
        let value = self.measured(f)?;
        let holds = match self.op {
            Op::Lt => value < self.limit,
            Op::Le => value <= self.limit,
            Op::Gt => value > self.limit,
            Op::Ge => value >= self.limit,
        };
        let shown = match self.metric {
            Metric::Latency(_) => format!("{:.1}ms", value / 1e6),
            Metric::MatchPercent
            | Metric::Differing { percent: true }
            | Metric::Failed { percent: true } => format!("{value:.2}%"),
            _ => format!("{value}"),
        };
        holds.then(|| format!("--fail-if '{}' holds: measured {shown}", self.text))
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn bad(gate: &str, reason: impl Into<String>) -> DiffError {
    DiffError::BadGate {
        gate: gate.to_string(),
        reason: reason.into(),
    }
}

/// `250ms`, `1.5s`, `800us`, `90000ns` in nanoseconds.
fn duration_ns(gate: &str, s: &str) -> Result<f64, DiffError> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| bad(gate, format!("{s:?} needs a unit: ms, s, us or ns")))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| bad(gate, format!("{num:?} is not a number")))?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        other => {
            return Err(bad(
                gate,
                format!("unknown unit {other:?}: use ms, s, us or ns"),
            ))
        }
    };
    Ok(n * scale)
}

impl FromStr for Gate {
    type Err = DiffError;
    fn from_str(s: &str) -> Result<Gate, DiffError> {
        let text: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let at = text
            .find(['<', '>'])
            .ok_or_else(|| bad(s, "expected METRIC<VALUE or METRIC>VALUE (also <= and >=)"))?;
        let (name, rest) = text.split_at(at);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        if value.is_empty() {
            return Err(bad(s, "no value after the comparison"));
        }
        let number = |v: &str| -> Result<f64, DiffError> {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| bad(s, format!("{v:?} is not a non-negative number")))
        };
        let percent = value.ends_with('%');
        let plain = value.trim_end_matches('%');
        let name_lower = name.to_ascii_lowercase();
        let (metric, limit) = match name_lower.as_str() {
            "match" | "matched" => (Metric::MatchPercent, number(plain)?),
            "differing" | "diff" | "different" => (Metric::Differing { percent }, number(plain)?),
            "failed" | "errors" => (Metric::Failed { percent }, number(plain)?),
            "max" => (Metric::Latency(100.0), duration_ns(s, value)?),
            p if p.starts_with('p') => {
                let pct: f64 = match &p[1..] {
                    "999" => 99.9,
                    digits => digits
                        .parse()
                        .ok()
                        .filter(|n| *n > 0.0 && *n <= 100.0)
                        .ok_or_else(|| {
                            bad(s, format!("unknown percentile {p:?}: p50, p95, p99, p999"))
                        })?,
                };
                (Metric::Latency(pct), duration_ns(s, value)?)
            }
            "" => return Err(bad(s, "no metric before the comparison")),
            other => {
                return Err(bad(
                    s,
                    format!(
                        "unknown metric {other:?}: match, differing, failed, p50, p95, p99, max"
                    ),
                ))
            }
        };
        if matches!(metric, Metric::MatchPercent) && limit > 100.0 {
            return Err(bad(s, "a match share is at most 100%"));
        }
        Ok(Gate {
            text,
            metric,
            op,
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct F(u64, u64, u64, u64, Option<u64>);
    impl Figures for F {
        fn total(&self) -> u64 {
            self.0
        }
        fn matched(&self) -> u64 {
            self.1
        }
        fn differing(&self) -> u64 {
            self.2
        }
        fn failed(&self) -> u64 {
            self.3
        }
        fn latency_now(&self, _p: f64) -> Option<u64> {
            self.4
        }
    }

    #[test]
    fn gates_parse_and_check() {
        let g: Gate = "match<99%".parse().unwrap();
        assert!(g.check(&F(100, 98, 2, 0, None)).is_some());
        assert!(g.check(&F(100, 99, 1, 0, None)).is_none());
        let g: Gate = "p99 > 250ms".parse().unwrap();
        assert_eq!(g.metric, Metric::Latency(99.0));
        assert!(g
            .check(&F(1, 1, 0, 0, Some(300_000_000)))
            .unwrap()
            .contains("300.0ms"));
        assert!(g.check(&F(1, 1, 0, 0, Some(200_000_000))).is_none());
        assert!(g.check(&F(0, 0, 0, 0, None)).is_none());
        let g: Gate = "failed>0".parse().unwrap();
        assert!(g.check(&F(10, 9, 0, 1, None)).is_some());
        let g: Gate = "differing>=10%".parse().unwrap();
        assert!(g.check(&F(10, 9, 1, 0, None)).is_some());
        assert!("p999>1s".parse::<Gate>().is_ok());
    }

    #[test]
    fn bad_gates_say_why() {
        for (g, why) in [
            ("match=99%", "expected METRIC"),
            ("p99>250", "needs a unit"),
            ("p99>250h", "unknown unit"),
            ("speed>3", "unknown metric"),
            ("match<", "no value"),
            ("match<abc%", "not a non-negative number"),
            ("match<101%", "at most 100%"),
            ("p0>1ms", "unknown percentile"),
        ] {
            let e = g.parse::<Gate>().unwrap_err().to_string();
            assert!(e.contains(why), "{g}: {e}");
        }
    }
}
