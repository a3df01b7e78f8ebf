//! The judge of `mf replay --to` and `mf diff`: compares a recorded exchange with an observed
//! one, tells noise from differences, rebinds ids, builds reports and evaluates gates.
//!
//! A pure stage: exchanges in, verdicts and reports out. It knows nothing about sockets (the
//! driver in `replay::to` sends the requests; the CLI glues the two).
//!
//! Imports: `model`, `vocab`.

mod body;
mod gate;
mod histogram;
mod judge;
#[cfg(test)]
mod judge_tests;
mod junit;
mod proto;
mod rebind;
#[cfg(test)]
mod rebind_tests;
mod report;
#[cfg(test)]
mod report_tests;
mod rules;
mod scope;
mod stream;

pub(crate) use gate::Gate;
pub(crate) use judge::Judge;
pub(crate) use rebind::Rebinder;
pub(crate) use report::Report;
pub(crate) use rules::{Learner, Rules};

use crate::model::ErrorKind;

/// What the judge found for one exchange: the differences that count and the ones it set
/// aside as noise (each with the rule that did).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub differences: Vec<Difference>,
    pub ignored: Vec<Ignored>,
}

impl Verdict {
    /// True when nothing differs.
    pub(crate) fn matched(&self) -> bool {
        self.differences.is_empty()
    }
}

/// One difference: where (`status`, `header content-type`, `$.items[2].name`, `body line 3`,
/// `grpc message 2 $.x`, `grpc trailer grpc-status`, `ws frame 3`) and both values as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Difference {
    pub path: String,
    pub recorded: String,
    pub now: String,
}

/// A value that differed but is noise, and the rule that says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ignored {
    pub path: String,
    pub rule: String,
}

/// What became of one recorded exchange: compared, or no answer to compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Compared(Verdict),
    /// No answer to compare (made by `mf replay --to`: a recording always has its answer).
    #[allow(dead_code)]
    Failed {
        reason: String,
        kind: Option<ErrorKind>,
    },
}

/// One line of the report: the recorded exchange, what became of it, and both latencies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: i64,
    pub method: String,
    pub path: String,
    pub outcome: Outcome,
    pub latency_recorded_ns: Option<u64>,
    pub latency_now_ns: Option<u64>,
}

/// Errors of the judge's inputs (gates, ignore rules).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiffError {
    /// A `--fail-if` expression that does not parse.
    #[error("bad --fail-if {gate:?}: {reason} (examples: 'match<99%', 'p99>250ms', 'failed>0')")]
    BadGate { gate: String, reason: String },
}
