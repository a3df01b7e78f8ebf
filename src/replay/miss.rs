//! Record-on-miss: what the pipeline does with a request nothing answers, when it was given a
//! [`MissHook`] (`mf replay FILE --upstream URL`).
//!
//! The hook (implemented outside replay, which must not know how forwarding or recording
//! work) fetches the answer from somewhere — the real upstream — and keeps it; the pipeline
//! serves it and remembers it here, so that the same request is answered from memory for
//! the rest of the run without asking the hook again.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::matcher::{Incoming, MatchResult, Matcher, RepeatPolicy};
use crate::model::{Exchange, Header, Response};

/// A request neither the recording nor the fixtures answered.
#[derive(Clone, Copy, Debug)]
pub struct MissRequest<'a> {
    pub method: &'a str,
    /// Origin form: path and query.
    pub target: &'a str,
    pub headers: &'a [Header],
    pub body: &'a [u8],
}

/// What the hook made of a miss.
#[derive(Debug)]
pub enum MissAnswer {
    /// The exchange as fetched and kept: its response is served, now and from then on.
    Kept(Box<Exchange>),
    /// Nothing was kept; serve this response once (a 502 saying why, say).
    Failed(Box<Response>),
}

/// The future a [`MissHook`] returns.
pub type MissFuture<'a> = Pin<Box<dyn Future<Output = MissAnswer> + Send + 'a>>;

/// Fetches and keeps the answer to a request the replay could not answer.
pub trait MissHook: Send + Sync {
    /// The answer to `req`.
    fn on_miss<'a>(&'a self, req: MissRequest<'a>) -> MissFuture<'a>;
}

/// The exchanges learned from misses so far, matched like a recording.
struct Learned {
    exchanges: Vec<Exchange>,
    matcher: Matcher,
}

/// The pipeline's side of record-on-miss: the hook, what it taught, and counters.
pub(crate) struct Misses {
    hook: Arc<dyn MissHook>,
    learned: RwLock<Learned>,
    pub(crate) kept: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Misses {
    pub(crate) fn new(hook: Arc<dyn MissHook>) -> Misses {
        Misses {
            hook,
            learned: RwLock::new(Learned {
                exchanges: Vec::new(),
                matcher: Matcher::new(&[], RepeatPolicy::Last),
            }),
            kept: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The learned answer to `req`, if an earlier miss taught one.
    pub(crate) fn find(&self, req: &Incoming<'_>) -> Option<Response> {
        let learned = self.learned.read().ok()?;
        match learned.matcher.find(req) {
            MatchResult::Found { index, .. } => learned.exchanges.get(index)?.response.clone(),
            MatchResult::NotFound { .. } => None,
        }
    }

    /// Asks the hook about `req`; what it kept is learned. The response to serve.
    pub(crate) async fn fetch(&self, req: MissRequest<'_>) -> Response {
        match self.hook.on_miss(req).await {
            MissAnswer::Kept(ex) => {
                self.kept.fetch_add(1, Ordering::Relaxed);
                let response = ex.response.clone().unwrap_or_default();
                self.learn(*ex);
                response
            }
            MissAnswer::Failed(response) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                *response
            }
        }
    }

    /// Adds `ex` to what is answered from memory. The index is rebuilt: misses are few
    /// (each costs a trip to the upstream), so rebuilding stays cheap next to that trip.
    fn learn(&self, ex: Exchange) {
        let Ok(mut learned) = self.learned.write() else {
            return;
        };
        learned.exchanges.push(ex);
        learned.matcher = Matcher::new(&learned.exchanges, RepeatPolicy::Last);
    }
}
