//! The recorded gRPC calls of a recording, indexed once at start-up, and each prepared for
//! serving when it is loaded.
//!
//! A call is matched on its path (`/service/method`) and its first request message: a
//! recorded call with the same bytes first (in recorded order, like identical HTTP requests),
//! else the next recorded call of that method by position. A loaded call is prepared for
//! serving — header maps built, messages framed, every server event planned against the
//! client's events (see [`super::stream`]). Lookups allocate nothing and take no lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::matcher::RepeatPolicy;
use super::stream::{plan, Step};
use crate::decode::grpc;
use crate::model::{Direction, Exchange, ExchangeError, HeaderList, MessageKind, Protocol};
use crate::vocab::header_map;

/// Recorded calls answered in turn, with how many live calls the group has had.
#[derive(Default)]
struct Group {
    members: Vec<usize>,
    calls: AtomicUsize,
}

/// The recorded calls of one `/service/method`.
#[derive(Default)]
struct Method {
    all: Group,
    /// Calls whose first request message is exactly these bytes. Keyed by `Bytes` so that a
    /// lookup borrows the live message (`Bytes: Borrow<[u8]>`) instead of cloning it.
    by_first: HashMap<Bytes, Group>,
    /// Calls that sent no message at all.
    without_message: Group,
    /// Every recorded call has the server speak before the client.
    server_first: bool,
}

/// Recorded gRPC calls by path and by path + first request message, with call counters.
/// Lookups allocate nothing and take no lock: this is the replay's hot path.
pub(crate) struct GrpcIndex {
    methods: HashMap<String, Method>,
    repeat: RepeatPolicy,
}

/// Indexes the gRPC calls of a recording one exchange at a time, in recorded order.
#[derive(Default)]
pub(crate) struct GrpcIndexBuilder {
    methods: HashMap<String, Method>,
    next: usize,
}

impl GrpcIndexBuilder {
    /// Adds the next recorded exchange (only a gRPC call's path and messages are read).
    pub(crate) fn push(&mut self, ex: &Exchange) {
        let i = self.next;
        self.next += 1;
        if ex.protocol != Some(Protocol::Grpc) {
            return;
        }
        let first = ex
            .messages
            .iter()
            .find(|m| m.direction == Direction::ClientToServer)
            .map(|m| m.data.clone());
        let server_first = ex
            .messages
            .first()
            .is_some_and(|m| m.direction == Direction::ServerToClient);
        let m = self
            .methods
            .entry(ex.request.path().to_string())
            .or_insert_with(|| Method {
                server_first: true,
                ..Method::default()
            });
        m.server_first &= server_first;
        m.all.members.push(i);
        match first {
            Some(f) => m.by_first.entry(f).or_default().members.push(i),
            None => m.without_message.members.push(i),
        }
    }

    pub(crate) fn finish(self, repeat: RepeatPolicy) -> GrpcIndex {
        GrpcIndex {
            methods: self.methods,
            repeat,
        }
    }
}

impl GrpcIndex {
    /// Indexes the gRPC exchanges of a recording.
    #[cfg(test)]
    pub(crate) fn new(exchanges: &[Exchange], repeat: RepeatPolicy) -> GrpcIndex {
        let mut b = GrpcIndexBuilder::default();
        for ex in exchanges {
            b.push(ex);
        }
        b.finish(repeat)
    }

    /// True when every recorded call of `path` has the server speak before the client: the
    /// answer must start without waiting for a client message.
    pub(crate) fn server_speaks_first(&self, path: &str) -> bool {
        self.methods.get(path).is_some_and(|m| m.server_first)
    }

    /// The recorded call answering a live call of `path` whose first message is `first`.
    pub(crate) fn find(&self, path: &str, first: Option<&Bytes>) -> Option<usize> {
        let method = self.methods.get(path)?;
        let group = match first {
            Some(f) => method.by_first.get(&f[..]),
            None => (!method.without_message.members.is_empty()).then_some(&method.without_message),
        }
        .unwrap_or(&method.all);
        let call = group.calls.fetch_add(1, Ordering::Relaxed);
        let n = group.members.len();
        let pick = match self.repeat {
            RepeatPolicy::Last => call.min(n.saturating_sub(1)),
            RepeatPolicy::Cycle => call % n.max(1),
            RepeatPolicy::NotFound => call,
        };
        group.members.get(pick).copied()
    }
}

/// A recorded call made ready to serve once, when first loaded: header maps built, messages
/// framed, every server event planned.
pub(crate) struct Prepared {
    pub(crate) client_messages: Arc<Vec<Bytes>>,
    /// `None`: no response was recorded.
    pub(crate) head: Option<(u16, http::HeaderMap, Step)>,
    /// Framed server messages with their plan.
    pub(crate) server: Vec<(Step, Bytes)>,
    pub(crate) trailers: Option<http::HeaderMap>,
    pub(crate) end: Option<Step>,
    pub(crate) trailers_only: bool,
    pub(crate) error: Option<ExchangeError>,
}

impl Prepared {
    pub(crate) fn new(ex: &Exchange) -> Prepared {
        let client: Vec<&crate::model::StreamMessage> = ex
            .messages
            .iter()
            .filter(|m| m.direction == Direction::ClientToServer)
            .collect();
        let offsets: Vec<u64> = client.iter().map(|m| m.offset_ns).collect();
        let half_close = ex.timings.request_end_ns;
        let server: Vec<(Step, Bytes)> = ex
            .messages
            .iter()
            .filter(|m| m.direction == Direction::ServerToClient)
            .map(|m| {
                let mut out = BytesMut::with_capacity(5 + m.data.len());
                grpc::encode(
                    &mut out,
                    matches!(m.kind, MessageKind::Grpc { compressed: true }),
                    &m.data,
                );
                (plan(&offsets, half_close, m.offset_ns), out.freeze())
            })
            .collect();
        let resp = ex.response.as_ref();
        Prepared {
            client_messages: Arc::new(client.iter().map(|m| m.data.clone()).collect()),
            head: resp.map(|r| {
                let step = plan(
                    &offsets,
                    half_close,
                    ex.timings.response_first_byte_ns.unwrap_or(0),
                );
                (r.status, header_map(&r.headers, None), step)
            }),
            trailers_only: resp.is_some_and(|r| {
                server.is_empty()
                    && r.trailers.is_empty()
                    && r.headers.header("grpc-status").is_some()
            }),
            server,
            trailers: resp
                .filter(|r| !r.trailers.is_empty())
                .map(|r| header_map(&r.trailers, None)),
            end: ex
                .timings
                .response_end_ns
                .map(|e| plan(&offsets, half_close, e)),
            error: ex.error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Request, StreamMessage};

    fn call(path: &str, first: &[u8]) -> Exchange {
        Exchange {
            protocol: Some(Protocol::Grpc),
            request: Request {
                method: "POST".into(),
                target: path.into(),
                ..Default::default()
            },
            messages: vec![StreamMessage {
                direction: Direction::ClientToServer,
                offset_ns: 0,
                kind: MessageKind::Grpc { compressed: false },
                data: Bytes::copy_from_slice(first),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn exact_message_first_then_by_order() {
        let exs = [
            call("/s.S/A", b"one"),
            call("/s.S/A", b"two"),
            call("/s.S/A", b"one"),
            call("/s.S/B", b"x"),
        ];
        let idx = GrpcIndex::new(&exs, RepeatPolicy::Last);
        let b = |s: &'static [u8]| Bytes::from_static(s);
        assert_eq!(idx.find("/s.S/A", Some(&b(b"two"))), Some(1));
        assert_eq!(idx.find("/s.S/A", Some(&b(b"one"))), Some(0));
        assert_eq!(
            idx.find("/s.S/A", Some(&b(b"one"))),
            Some(2),
            "identical calls in recorded order"
        );
        assert_eq!(
            idx.find("/s.S/A", Some(&b(b"one"))),
            Some(2),
            "then the last repeats"
        );
        assert_eq!(
            idx.find("/s.S/A", Some(&b(b"new"))),
            Some(0),
            "unknown bytes: by position"
        );
        assert_eq!(idx.find("/s.S/A", Some(&b(b"new"))), Some(1));
        assert_eq!(idx.find("/s.S/C", None), None);
    }
}
