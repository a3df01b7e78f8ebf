//! The capture policy: what a recording keeps of the traffic it sees. Every recording path
//! (the proxy, live sniffing, `mf import`) hands its finished exchanges to one
//! [`PolicySink`] wrapped around the store's sink, so they all apply the same policy:
//!
//! 1. filters (`--include`, `--exclude`, `--host`, `--method`, `--content-type`) and
//!    sampling (`--sample`, `--sample-by`): a rejected exchange was forwarded as usual, it is
//!    only not stored (and counted);
//! 2. redaction of secrets, on unless `--keep-secrets` (rules in [`crate::vocab::secrets`]);
//! 3. `--dedup N`.
//!
//! Nothing here logs an exchange's content: before step 2 it may hold credentials.

mod dedup;
mod filter;
mod sample;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::{Exchange, ExchangeSink};
use crate::vocab::secrets::{self, Placeholders, Redaction, Rules};

pub use dedup::DEDUP_TAG;
pub use filter::FilterConfig;
pub use sample::SampleConfig;

/// A policy that cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A filter pattern is not a glob.
    #[error("invalid pattern {pattern:?}: {reason}")]
    Glob { pattern: String, reason: String },
    /// `--sample` outside (0, 1].
    #[error("--sample must be a fraction in (0, 1], got {0}")]
    SampleRate(f64),
    /// No redaction key could be made.
    #[error(transparent)]
    Key(#[from] secrets::NoRandomKey),
}

/// What the capture flags asked for.
#[derive(Clone, Debug, Default)]
pub struct PolicyConfig {
    pub filter: FilterConfig,
    pub sample: Option<SampleConfig>,
    /// Store at most this many identical exchanges.
    pub dedup: Option<usize>,
    /// Store values as sent (`--keep-secrets`).
    pub keep_secrets: bool,
    /// Extra `--redact` names and JSON paths.
    pub redact: Vec<String>,
}

impl PolicyConfig {
    /// Checks the policy without applying it: invalid globs and rates are refused before
    /// anything is opened.
    ///
    /// # Errors
    /// As [`PolicySink::new`].
    pub fn check(&self) -> Result<(), PolicyError> {
        if let Some(s) = &self.sample {
            if !(s.rate > 0.0 && s.rate <= 1.0) {
                return Err(PolicyError::SampleRate(s.rate));
            }
        }
        filter::Filter::new(&self.filter).map(|_| ())
    }
}

/// What the policy did, for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicySummary {
    /// Not stored: filtered out, sampling included.
    pub filtered: u64,
    /// Of `filtered`, left out of the sample.
    pub sampled_out: u64,
    /// Not stored: duplicates beyond `--dedup`.
    pub deduplicated: u64,
    /// Values replaced by placeholders.
    pub redacted: u64,
}

impl std::fmt::Display for PolicySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} filtered", self.filtered)?;
        if self.sampled_out > 0 {
            write!(f, " ({} by sampling)", self.sampled_out)?;
        }
        write!(
            f,
            ", {} deduplicated, {} secret values redacted",
            self.deduplicated, self.redacted
        )
    }
}

/// The redaction half: rules and the session's in-memory key.
struct Redactor {
    rules: Rules,
    keys: Placeholders,
}

/// The sink every recording path writes to: applies the policy, then hands what is kept to
/// the store's sink. Call [`PolicySink::finish`] before closing the store, so that exchanges
/// held back by dedup are written.
pub struct PolicySink {
    inner: Arc<dyn ExchangeSink>,
    filter: filter::Filter,
    sample: Option<SampleConfig>,
    redactor: Option<Redactor>,
    dedup: Option<Mutex<dedup::Dedup>>,
    filtered: AtomicU64,
    sampled_out: AtomicU64,
    deduplicated: AtomicU64,
    redacted: AtomicU64,
}

impl PolicySink {
    /// Wraps `inner` with the policy `cfg`; the redaction key is made here, fresh.
    ///
    /// # Errors
    /// A filter is not a valid glob, the sample rate is out of range, or no key could be
    /// made.
    pub fn new(
        inner: Arc<dyn ExchangeSink>,
        cfg: &PolicyConfig,
    ) -> Result<PolicySink, PolicyError> {
        let keys = Placeholders::random()?;
        Self::with_keys(inner, cfg, keys)
    }

    /// As [`PolicySink::new`] with a given key (tests).
    pub fn with_keys(
        inner: Arc<dyn ExchangeSink>,
        cfg: &PolicyConfig,
        keys: Placeholders,
    ) -> Result<PolicySink, PolicyError> {
        cfg.check()?;
        Ok(PolicySink {
            inner,
            filter: filter::Filter::new(&cfg.filter)?,
            sample: cfg.sample.clone(),
            redactor: (!cfg.keep_secrets).then(|| Redactor {
                rules: Rules::new(&cfg.redact),
                keys,
            }),
            dedup: cfg.dedup.map(|n| Mutex::new(dedup::Dedup::new(n))),
            filtered: AtomicU64::new(0),
            sampled_out: AtomicU64::new(0),
            deduplicated: AtomicU64::new(0),
            redacted: AtomicU64::new(0),
        })
    }

    /// Writes the exchanges dedup held back. Idempotent.
    pub fn finish(&self) {
        if let Some(d) = &self.dedup {
            let held = d.lock().unwrap_or_else(|p| p.into_inner()).drain();
            for ex in held {
                self.inner.record(ex);
            }
        }
    }

    /// What the policy did so far.
    pub fn summary(&self) -> PolicySummary {
        PolicySummary {
            filtered: self.filtered.load(Ordering::Relaxed),
            sampled_out: self.sampled_out.load(Ordering::Relaxed),
            deduplicated: self.deduplicated.load(Ordering::Relaxed),
            redacted: self.redacted.load(Ordering::Relaxed),
        }
    }
}

impl ExchangeSink for PolicySink {
    fn record(&self, mut ex: Box<Exchange>) {
        if !self.filter.keeps(&ex) {
            self.filtered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.sample.as_ref().is_some_and(|s| !s.keeps(&ex)) {
            self.filtered.fetch_add(1, Ordering::Relaxed);
            self.sampled_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(r) = &self.redactor {
            let mut pass = Redaction::new(&r.rules, &r.keys);
            let n = secrets::redact_exchange(&mut ex, &mut pass);
            self.redacted.fetch_add(n, Ordering::Relaxed);
        }
        let Some(d) = &self.dedup else {
            self.inner.record(ex);
            return;
        };
        let verdict = d.lock().unwrap_or_else(|p| p.into_inner()).offer(ex);
        match verdict {
            dedup::Verdict::Store(ex) => self.inner.record(ex),
            dedup::Verdict::Dropped => {
                self.deduplicated.fetch_add(1, Ordering::Relaxed);
            }
            dedup::Verdict::Held { evicted } => {
                if let Some(ex) = evicted {
                    self.inner.record(ex);
                }
            }
        }
    }
}

impl Drop for PolicySink {
    fn drop(&mut self) {
        // A path that forgot `finish` still stores what was held back.
        self.finish();
    }
}
