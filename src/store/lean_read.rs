//! What a replay of a big recording needs from SQLite: one walk over the columns its index
//! looks at (no headers, no response bodies), and a pool of read connections that load
//! single exchanges for answers on demand, from many threads at once (WAL lets readers run
//! side by side, and beside a writer appending misses).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};

use super::backend::ExchangeLoader;
use super::match_key::{self, BodyKey};
use super::read::Reader;
use super::row::{opt_u64, set, text};
use super::StoreError;
use crate::model::{Exchange, Protocol, Response, Timings};

/// Read connections kept open between loads. More threads than this may load at once; the
/// extra connections are closed after their load.
const MAX_IDLE: usize = 8;

/// SQLite page cache of the lean walk when it looks request bodies up, in KiB.
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
        // A load reads one row by primary key and its blobs by key: a few pages down each
        // b-tree, so 512 KiB of page cache (the interior pages) serves it as well as the
        // default 2 MiB, and the pool's connections cost a quarter of the memory.
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -512;")?;
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
    /// As [`super::RecordingRead::for_each_lean`], reading only the columns it keeps, and
    /// stream messages of gRPC calls only.
    ///
    /// # Errors
    /// Database errors or a damaged row.
    pub fn for_each_lean(&self, mut f: impl FnMut(Exchange) -> bool) -> Result<(), StoreError> {
        self.for_each_indexed(|ex, key| {
            let mut ex = std::mem::take(ex);
            if ex.request.body.data.is_empty() && !matches!(key, Some(BodyKey::Empty) | None) {
                // The key spared reading the body; a caller of this walk wants it.
                ex.request.body.data = match self.body_of(ex.id) {
                    Ok(data) => data,
                    Err(_) => Bytes::new(),
                };
            }
            f(ex)
        })
    }

    /// As [`super::RecordingRead::for_each_indexed`]: one exchange lent to `f` for every row
    /// and refilled in place (its strings keep their allocations, or those of whatever `f`
    /// swapped in), request bodies read only for rows written without a stored key. Every
    /// field the walk reads is set for every row, so nothing of a swapped-in exchange's
    /// earlier row survives into the next.
    ///
    /// # Errors
    /// Database errors or a damaged row.
    pub fn for_each_indexed(
        &self,
        f: impl FnMut(&mut Exchange, Option<BodyKey>) -> bool,
    ) -> Result<(), StoreError> {
        let walked = self.walk_indexed(f);
        // Restores the default if the walk grew the cache for body lookups.
        self.conn
            .execute_batch("PRAGMA cache_size = -2000; PRAGMA shrink_memory;")?;
        walked
    }

    /// The request body of exchange `id`, read on its own.
    fn body_of(&self, id: i64) -> Result<Bytes, StoreError> {
        let hash: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT req_body FROM exchanges WHERE id = ?1")?
            .query_row([id], |r| r.get(0))?;
        match hash {
            Some(h) => Ok(Bytes::from(self.blob(&h)?)),
            None => Ok(Bytes::new()),
        }
    }

    fn walk_indexed(
        &self,
        mut f: impl FnMut(&mut Exchange, Option<BodyKey>) -> bool,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, connection_id, seq, protocol, authority, method, target, status,
                    request_end_ns, response_first_byte_ns, response_end_ns, req_body_size,
                    req_body, req_body_key, started_at_ns
             FROM exchanges ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        let mut ex = Exchange::default();
        let mut cache_grown = false;
        while let Some(r) = rows.next()? {
            ex.id = r.get(0)?;
            ex.connection_id = opt_u64(r.get(1)?).unwrap_or(0);
            ex.seq = r.get(2)?;
            ex.protocol = Protocol::parse(text(r, 3)?);
            set(&mut ex.authority, text(r, 4)?);
            set(&mut ex.request.method, text(r, 5)?);
            set(&mut ex.request.target, text(r, 6)?);
            let status: Option<u16> = r.get(7)?;
            ex.response = status.map(|status| Response {
                status,
                ..Response::default()
            });
            ex.timings = Timings {
                request_end_ns: opt_u64(r.get(8)?),
                response_first_byte_ns: opt_u64(r.get(9)?),
                response_end_ns: opt_u64(r.get(10)?),
            };
            ex.request.body.size = opt_u64(r.get(11)?).unwrap_or(0);
            ex.started_at_ns = r.get(14)?;
            let hash = r
                .get_ref(12)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?;
            let stored = r
                .get_ref(13)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?;
            let key = match_key::from_stored(hash, stored).map_err(corrupt)?;
            ex.request.body.data = match (key, hash) {
                (None, Some(hash)) => {
                    if !cache_grown {
                        // Rows written before v4: their bodies are looked up by hash all
                        // over the file, where a page cache larger than SQLite's default
                        // 2 MiB saves most reads of the same pages.
                        self.conn
                            .execute_batch(&format!("PRAGMA cache_size = -{WALK_CACHE_KIB};"))?;
                        cache_grown = true;
                    }
                    Bytes::from(self.blob(hash)?)
                }
                _ => Bytes::new(),
            };
            ex.messages = if ex.protocol == Some(Protocol::Grpc) {
                self.messages(ex.id)?
            } else {
                Vec::new()
            };
            if !f(&mut ex, key) {
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
    use crate::model::{Body, Direction, Header, MessageKind, Request, StreamMessage};
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

    /// The keys of every exchange's request body as the index walk gives them: stored, or
    /// computed from the body the walk read.
    fn walked_keys(reader: &Reader) -> Vec<(i64, Option<BodyKey>, BodyKey)> {
        let mut keys = vec![];
        reader
            .for_each_indexed(|ex, stored| {
                let computed = crate::store::body_key(&ex.request.body.data);
                keys.push((ex.id, stored, stored.unwrap_or(computed)));
                true
            })
            .unwrap();
        keys
    }

    /// A v3 recording (no stored body keys) migrates to v4; its old rows have their bodies
    /// read for their keys, rows appended afterwards have theirs stored, and both give the
    /// key a replay computes from the body.
    #[test]
    fn v3_recordings_index_from_bodies_and_new_rows_from_stored_keys() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/recordings");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        std::fs::copy(fixtures.join("v3.db"), &path).unwrap();
        let reader = Reader::open(&path).unwrap();
        let version: i32 = reader
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, crate::store::SCHEMA_VERSION);
        let old = walked_keys(&reader);
        // Rows with a body have their key computed; empty bodies need no read.
        assert!(
            old.iter()
                .all(|(_, stored, _)| matches!(stored, None | Some(BodyKey::Empty))),
            "{old:?}"
        );
        let whole = reader.load_all().unwrap();
        for ((id, _, key), ex) in old.iter().zip(&whole) {
            assert_eq!(
                (*id, *key),
                (ex.id, crate::store::body_key(&ex.request.body.data))
            );
        }
        assert!(
            old.iter()
                .any(|(_, stored, k)| stored.is_none() && *k != BodyKey::Empty),
            "{old:?}"
        );
        drop(reader);

        let mut json = whole[0].clone();
        json.request.body = Body::full(&b" {\"b\": 2, \"a\": 1}"[..]);
        let mut raw = whole[0].clone();
        raw.request.body = Body::full(&b"plain"[..]);
        write_exchanges(&path, &Meta::default(), [json, raw].into_iter()).unwrap();
        let reader = Reader::open(&path).unwrap();
        let keys = walked_keys(&reader);
        assert_eq!(keys[..old.len()], old[..]);
        let new = &keys[old.len()..];
        assert_eq!(
            new.iter().map(|(_, stored, _)| *stored).collect::<Vec<_>>(),
            vec![
                Some(crate::store::body_key(br#"{"a":1,"b":2}"#)),
                Some(crate::store::body_key(b"plain")),
            ]
        );
        // The owned walk still hands out the bodies its keys spared reading.
        let mut lean_bodies = vec![];
        reader
            .for_each_lean(|ex| {
                lean_bodies.push(ex.request.body.data);
                true
            })
            .unwrap();
        assert_eq!(&lean_bodies[old.len() + 1][..], b"plain");
    }
}
