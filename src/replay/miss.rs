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

use bytes::{Bytes, BytesMut};

use super::matcher::{Incoming, MatchResult, Matcher, RepeatPolicy};
use crate::decode::grpc;
use crate::model::{Direction, Exchange, Header, MessageKind, Protocol, Response};

/// A request neither the recording nor the fixtures answered.
#[derive(Clone, Copy, Debug)]
pub struct MissRequest<'a> {
    pub method: &'a str,
    /// Origin form: path and query.
    pub target: &'a str,
    pub headers: &'a [Header],
    /// The whole body; for a gRPC call, its length-prefixed messages as the client sent them.
    pub body: &'a [u8],
    /// A gRPC call: forwarded over HTTP/2, answered with messages and trailers.
    pub grpc: bool,
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
        self.find_exchange(req)?.response
    }

    /// The learned exchange answering `req` (for a gRPC call, `req.body` is its framed
    /// messages), if an earlier miss taught one.
    pub(crate) fn find_exchange(&self, req: &Incoming<'_>) -> Option<Exchange> {
        let learned = self.learned.read().ok()?;
        match learned.matcher.find(req) {
            MatchResult::Found { index, .. } => learned.exchanges.get(index).cloned(),
            MatchResult::NotFound { .. } => None,
        }
    }

    /// Asks the hook about `req`; what it kept is learned. The response to serve.
    pub(crate) async fn fetch(&self, req: MissRequest<'_>) -> Response {
        match self.fetch_exchange(req).await {
            Ok(ex) => ex.response.unwrap_or_default(),
            Err(response) => response,
        }
    }

    /// As [`Misses::fetch`], with the whole exchange kept (a gRPC answer is its messages and
    /// trailers), or the response to serve once when nothing was kept.
    pub(crate) async fn fetch_exchange(&self, req: MissRequest<'_>) -> Result<Exchange, Response> {
        match self.hook.on_miss(req).await {
            MissAnswer::Kept(ex) => {
                self.kept.fetch_add(1, Ordering::Relaxed);
                self.learn((*ex).clone());
                Ok(*ex)
            }
            MissAnswer::Failed(response) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                Err(*response)
            }
        }
    }

    /// Adds `ex` to what is answered from memory. The index is rebuilt: misses are few
    /// (each costs a trip to the upstream), so rebuilding stays cheap next to that trip.
    fn learn(&self, mut ex: Exchange) {
        let Ok(mut learned) = self.learned.write() else {
            return;
        };
        if ex.protocol() == Protocol::Grpc {
            // A gRPC request is recorded as messages; matched on them, framed as on the wire.
            ex.request.body.data = client_frames(&ex);
        }
        learned.exchanges.push(ex);
        learned.matcher = Matcher::new(&learned.exchanges, RepeatPolicy::Last);
    }
}

/// The client messages of a recorded gRPC call, framed as the client sent them.
pub(crate) fn client_frames(ex: &Exchange) -> Bytes {
    frames(ex, Direction::ClientToServer)
}

/// The messages `direction` sent in a recorded gRPC call, length-prefixed as on the wire.
pub(crate) fn frames(ex: &Exchange, direction: Direction) -> Bytes {
    let mut out = BytesMut::new();
    for m in ex.messages.iter().filter(|m| m.direction == direction) {
        let compressed = matches!(m.kind, MessageKind::Grpc { compressed: true });
        grpc::encode(&mut out, compressed, &m.data);
    }
    out.freeze()
}
