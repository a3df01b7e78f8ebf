//! `--fail-if` gates: `match<99%`, `p99>250ms`.

use std::str::FromStr;

use super::DiffError;

/// One parsed `--fail-if` condition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Gate {
    pub(super) text: String,
}

impl FromStr for Gate {
    type Err = DiffError;
    fn from_str(s: &str) -> Result<Gate, DiffError> {
        Ok(Gate {
            text: s.to_string(),
        })
    }
}
