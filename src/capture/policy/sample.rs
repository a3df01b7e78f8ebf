//! `--sample`: store a fraction of the traffic, per exchange or per client.

use crate::model::{Exchange, HeaderList};

/// Keep `rate` of the exchanges; with `by`, the decision is a hash of that request header's
/// value, so one client (one API key, one session) is kept or dropped as a whole, the same
/// way in every recording.
#[derive(Clone, Debug)]
pub struct SampleConfig {
    /// Fraction kept, in (0, 1].
    pub rate: f64,
    /// The request header whose value decides.
    pub by: Option<String>,
}

impl SampleConfig {
    /// True when `ex` is in the sample.
    pub(crate) fn keeps(&self, ex: &Exchange) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        let draw = match &self.by {
            Some(name) => {
                // A client without the header is one client: the empty value.
                let value = ex.request.headers.header(name).unwrap_or_default();
                let hash = blake3::hash(value);
                let mut first = [0u8; 8];
                first.copy_from_slice(&hash.as_bytes()[..8]);
                u64::from_le_bytes(first) as f64 / u64::MAX as f64
            }
            None => rand::random::<f64>(),
        };
        draw < self.rate
    }
}
