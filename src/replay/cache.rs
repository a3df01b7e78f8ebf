//! Recorded answers loaded on demand, rendered once, and kept in a cache bounded in bytes:
//! a replay holds only an index of its recording in memory, and the answers clients ask for
//! again stay ready (rendered HTTP/1 bytes, a prepared gRPC call) without a trip to the
//! store. Pure: what is loaded comes in from the caller.

use std::sync::{Arc, Mutex, OnceLock};

use lru::LruCache;

use super::grpc_index::Prepared;
use super::render::{render, Rendered};
use crate::model::{Exchange, Protocol};

/// Default budget of the answer cache: with a 1M-exchange index (~150 MiB) the replay stays
/// under 256 MiB.
pub(crate) const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// What an answer costs in memory beyond its bodies and headers: the structs themselves
/// (an `Exchange` is several hundred bytes of strings and vectors before any text), the
/// allocations of its short strings, its LRU node. At 512 bytes a replay walking a
/// 1M-exchange recording (every request a new answer) grew by 90 MiB over a 32 MiB budget.
const OVERHEAD: usize = std::mem::size_of::<Recorded>() + 1024;

/// One recorded exchange ready to answer with.
pub(crate) struct Recorded {
    /// Its position in recorded order (the index the matcher and planner use).
    pub index: usize,
    pub exchange: Exchange,
    /// The HTTP/1 answer.
    pub rendered: Rendered,
    /// A gRPC call, prepared.
    pub grpc: Option<Arc<Prepared>>,
    /// The metric series its answers usually update, looked up on first use.
    pub(crate) series: OnceLock<Series>,
    /// A gRPC call: the grpc-status it ended with and its calls series, looked up on first
    /// use.
    pub(crate) grpc_series: OnceLock<(Option<u32>, prometheus::IntCounter)>,
}

/// The metric series of one recorded exchange's usual answer (protocol and status as first
/// served); answers with another protocol or status look theirs up.
pub(crate) struct Series {
    pub(crate) protocol: Protocol,
    pub(crate) status: u16,
    pub(crate) count: prometheus::IntCounter,
    pub(crate) duration: prometheus::Histogram,
}

impl Recorded {
    /// Renders `exchange`, recorded at position `index`.
    pub(crate) fn new(index: usize, exchange: Exchange) -> Recorded {
        let grpc =
            (exchange.protocol == Some(Protocol::Grpc)).then(|| Arc::new(Prepared::new(&exchange)));
        Recorded {
            index,
            rendered: render(&exchange),
            grpc,
            exchange,
            series: OnceLock::new(),
            grpc_series: OnceLock::new(),
        }
    }

    /// Bytes this answer holds (approximately: bodies, headers, rendered copies, messages).
    pub(crate) fn bytes(&self) -> usize {
        let ex = &self.exchange;
        let headers = |h: &[crate::model::Header]| {
            h.iter()
                .map(|h| h.name.len() + h.value.len() + 48)
                .sum::<usize>()
        };
        let response = ex.response.as_ref().map_or(0, |r| {
            r.body.data.len() + headers(&r.headers) + headers(&r.trailers)
        });
        let messages: usize = ex.messages.iter().map(|m| m.data.len() + 64).sum();
        let r = &self.rendered;
        OVERHEAD
            + ex.request.body.data.len()
            + headers(&ex.request.headers)
            + response
            + messages * if self.grpc.is_some() { 2 } else { 1 }
            + r.head.len()
            + r.head_close.len()
            + r.body.len()
    }
}

/// Answers by recorded position, least recently used evicted first once their bytes pass the
/// budget. The newest answer always stays, whatever its size.
pub(crate) struct AnswerCache {
    inner: Mutex<Inner>,
    budget: usize,
}

struct Inner {
    lru: LruCache<u32, (Arc<Recorded>, usize)>,
    bytes: usize,
}

impl AnswerCache {
    /// An empty cache holding up to `budget` bytes.
    pub(crate) fn new(budget: usize) -> AnswerCache {
        AnswerCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached answer at `index`, made the most recently used.
    pub(crate) fn get(&self, index: usize) -> Option<Arc<Recorded>> {
        let key = u32::try_from(index).ok()?;
        self.lock().lru.get(&key).map(|(r, _)| r.clone())
    }

    /// Keeps `answer`, evicting the least recently used beyond the budget.
    pub(crate) fn insert(&self, answer: Arc<Recorded>) {
        let Ok(key) = u32::try_from(answer.index) else {
            return;
        };
        let size = answer.bytes();
        let mut inner = self.lock();
        if let Some((_, old)) = inner.lru.put(key, (answer, size)) {
            inner.bytes -= old;
        }
        inner.bytes += size;
        while inner.bytes > self.budget && inner.lru.len() > 1 {
            match inner.lru.pop_lru() {
                Some((_, (_, n))) => inner.bytes -= n,
                None => break,
            }
        }
    }

    /// Bytes and answers held.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.bytes, inner.lru.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Body, Header, Request, Response};

    fn answer(index: usize, body: usize) -> Arc<Recorded> {
        let data = vec![b'x'; body];
        Arc::new(Recorded::new(
            index,
            Exchange {
                request: Request {
                    method: "GET".into(),
                    target: format!("/{index}").into(),
                    ..Default::default()
                },
                response: Some(Response {
                    status: 200,
                    reason: "OK".into(),
                    version: "HTTP/1.1".into(),
                    headers: vec![Header::new("Content-Length", body.to_string())],
                    body: Body::full(data),
                    trailers: vec![],
                }),
                ..Default::default()
            },
        ))
    }

    #[test]
    fn eviction_is_by_bytes_least_recently_used_first() {
        let one = answer(0, 10_000).bytes();
        assert!(one > 20_000, "body and its rendered copy count: {one}");
        let cache = AnswerCache::new(one * 3);
        for i in 0..3 {
            cache.insert(answer(i, 10_000));
        }
        assert_eq!(cache.usage().1, 3);
        // Using 0 makes 1 the least recently used: it goes first.
        assert!(cache.get(0).is_some());
        cache.insert(answer(3, 10_000));
        assert!(cache.get(1).is_none());
        assert!(cache.get(0).is_some() && cache.get(2).is_some() && cache.get(3).is_some());
        assert!(cache.usage().0 <= one * 3);
        // A big answer evicts as many as it needs, and stays itself even beyond the budget.
        cache.insert(answer(4, 100_000));
        assert_eq!(cache.usage().1, 1);
        assert!(cache.get(4).is_some());
        // Replacing an answer does not count it twice.
        cache.insert(answer(4, 100_000));
        assert_eq!(cache.usage().0, answer(4, 100_000).bytes());
    }

    #[test]
    fn a_cached_answer_is_the_rendered_recording() {
        let a = answer(7, 3);
        assert!(a.rendered.head.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(&a.rendered.body[..], b"xxx");
        assert_eq!(a.rendered.route, "/{id}");
    }
}
