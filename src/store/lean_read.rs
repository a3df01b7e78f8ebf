//! What a replay of a big recording needs from SQLite: one walk over the columns its index
//! looks at (no headers, no response bodies), and a pool of read connections that load
//! single exchanges for answers on demand, from many threads at once (WAL lets readers run
//! side by side, and beside a writer appending misses).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};

use super::backend::ExchangeLoader;
use super::read::Reader;
use super::{blobs, StoreError};
use crate::model::{Body, Exchange, Protocol, Request, Response, Timings};

/// Read connections kept open between loads. More threads than this may load at once; the
/// extra connections are closed after their load.
const MAX_IDLE: usize = 8;

/// SQLite page cache of the lean walk, in KiB.
const WALK_CACHE_KIB: u32 = 32 * 1024;

/// Connections to one recording, handed out one load at a time.
pub(super) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
}

impl ReaderPool {
    pub(super) fn new(path: PathBuf) -> ReaderPool {
        ReaderPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A connection of its own for a loading thread. The recording was checked (and
    /// migrated) when it was first opened, so this one skips the check.
    fn open(&self) -> Result<Reader, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| super::classify_open_error(&self.path, e))?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
        Ok(Reader {
            conn,
            path: self.path.clone(),
        })
    }
}

impl ExchangeLoader for ReaderPool {
    fn load(&self, id: i64) -> Result<Exchange, StoreError> {
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let reader = match taken {
            Some(r) => r,
            None => self.open()?,
        };
        let loaded = reader.load(id);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(reader);
        }
        loaded
    }
}

impl Reader {
    /// As [`super::RecordingRead::for_each_lean`], reading only the columns it keeps and the
    /// request bodies (a join on their blobs), and stream messages of gRPC calls only.
    ///
    /// # Errors
    /// Database errors or a damaged row.
    pub fn for_each_lean(&self, f: impl FnMut(Exchange) -> bool) -> Result<(), StoreError> {
        // Request bodies are looked up in the blobs table by hash, all over the file: a page
        // cache larger than SQLite's default 2 MiB for the walk saves most of its reads of
        // the same pages, and is given back afterwards.
        self.conn
            .execute_batch(&format!("PRAGMA cache_size = -{WALK_CACHE_KIB};"))?;
        let walked = self.walk_lean(f);
        self.conn
            .execute_batch("PRAGMA cache_size = -2000; PRAGMA shrink_memory;")?;
        walked
    }

    fn walk_lean(&self, mut f: impl FnMut(Exchange) -> bool) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT e.id, e.connection_id, e.seq, e.protocol, e.authority, e.method, e.target,
                    e.status, e.request_end_ns, e.response_first_byte_ns, e.response_end_ns,
                    e.req_body_size, e.req_body, rb.size, rb.codec, rb.data, e.started_at_ns
             FROM exchanges e LEFT JOIN blobs rb ON rb.hash = e.req_body
             ORDER BY e.id",
        )?;
        let mut rows = stmt.query([])?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let u64_at = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
        while let Some(r) = rows.next()? {
            let protocol: String = r.get(3)?;
            let status: Option<u16> = r.get(7)?;
            let body_key: Option<Vec<u8>> = r.get(12)?;
            let data = match body_key {
                None => Bytes::new(),
                Some(_) => {
                    let (size, codec, data): (Option<i64>, Option<i64>, Option<Vec<u8>>) =
                        (r.get(13)?, r.get(14)?, r.get(15)?);
                    let (Some(size), Some(codec), Some(data)) = (size, codec, data) else {
                        return Err(corrupt("a body refers to a missing blob".into()));
                    };
                    Bytes::from(blobs::decode(size, codec, data).map_err(|e| match e {
                        StoreError::Corrupt { reason, .. } => corrupt(reason),
                        other => other,
                    })?)
                }
            };
            let mut ex = Exchange {
                id: r.get(0)?,
                connection_id: u64_at(r.get(1)?).unwrap_or(0),
                seq: r.get(2)?,
                protocol: Protocol::parse(&protocol),
                started_at_ns: r.get(16)?,
                authority: r.get(4)?,
                request: Request {
                    method: r.get(5)?,
                    target: r.get(6)?,
                    body: Body {
                        size: u64_at(r.get(11)?).unwrap_or(0),
                        data,
                        ..Body::default()
                    },
                    ..Request::default()
                },
                response: status.map(|status| Response {
                    status,
                    ..Response::default()
                }),
                timings: Timings {
                    request_end_ns: u64_at(r.get(8)?),
                    response_first_byte_ns: u64_at(r.get(9)?),
                    response_end_ns: u64_at(r.get(10)?),
                },
                ..Exchange::default()
            };
            if ex.protocol == Some(Protocol::Grpc) {
                ex.messages = self.messages(ex.id)?;
            }
            if !f(ex) {
                break;
            }
        }
        Ok(())
    }

    /// A pool of connections to this reader's recording.
    pub(super) fn pool(&self) -> Arc<dyn ExchangeLoader> {
        Arc::new(ReaderPool::new(self.path.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, Header, MessageKind, StreamMessage};
    use crate::store::{lean, open_reader, write_exchanges, Meta};

    #[test]
    fn the_sqlite_walk_reads_what_lean_keeps_and_the_pool_loads_whole_exchanges() {
        let mut post = Exchange {
            protocol: Some(Protocol::Http11),
            authority: "api.example".into(),
            request: Request {
                method: "POST".into(),
                target: "/users?x=1".into(),
                version: "HTTP/1.1".into(),
                headers: vec![Header::new("Host", "api.example")],
                body: Body::full(&b"{\"a\":1}"[..]),
                trailers: vec![],
            },
            response: Some(Response {
                status: 201,
                reason: "Created".into(),
                headers: vec![Header::new("Content-Type", "application/json")],
                body: Body::full(&b"{\"id\":7}"[..]),
                ..Response::default()
            }),
            timings: Timings {
                request_end_ns: Some(5),
                response_first_byte_ns: Some(9),
                response_end_ns: Some(12),
            },
            ..Exchange::default()
        };
        let mut grpc = post.clone();
        grpc.protocol = Some(Protocol::Grpc);
        grpc.messages = vec![StreamMessage {
            direction: Direction::ClientToServer,
            offset_ns: 3,
            kind: MessageKind::Grpc { compressed: false },
            data: Bytes::from_static(b"ping"),
        }];
        post.connection_id = 2;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        write_exchanges(&path, &Meta::default(), [post, grpc].into_iter()).unwrap();
        let reader = Reader::open(&path).unwrap();
        let mut fast = vec![];
        reader
            .for_each_lean(|ex| {
                fast.push(ex);
                true
            })
            .unwrap();
        let whole = open_reader(&path).unwrap().load_all().unwrap();
        let slow: Vec<Exchange> = whole.iter().cloned().map(lean).collect();
        assert_eq!(fast, slow);
        assert_eq!(fast[1].messages.len(), 1);
        let pool = reader.pool();
        assert_eq!(pool.load(whole[0].id).unwrap(), whole[0]);
        assert!(matches!(
            pool.load(999),
            Err(StoreError::NoSuchExchange(999))
        ));
    }
}
