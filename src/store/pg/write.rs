//! Writing a PostgreSQL recording: each batch is one transaction: new blobs as one multi-row
//! insert over arrays (`ON CONFLICT DO NOTHING`, recorders share them), the exchanges by
//! binary `COPY`, then their messages as one multi-row insert.
//!
//! A lost connection fails the batch as a storage failure (the writer thread counts and
//! retries, as for a full disk); the next batch reconnects.

use std::collections::HashSet;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::Client;

use super::{connect, schema, PgLocation};
use crate::model::{Direction, Exchange};
use crate::store::backend::RecordingWrite;
use crate::store::blobs::{self, BlobKey};
use crate::store::codec::{encode_chunks, encode_headers};
use crate::store::{Meta, PatternRow, StoreError};

/// A PostgreSQL recording opened for appending.
pub(crate) struct PgWriter {
    loc: PgLocation,
    /// `None` after a connection failure: the next write reconnects.
    client: Option<Client>,
    /// Blobs this writer knows are stored: a repeated body costs a hash, not a row.
    known: HashSet<BlobKey>,
    connection_base: u64,
    recorder: String,
}

impl PgWriter {
    /// Connects, creates or migrates the recording, and takes this writer's block of
    /// connection ids.
    pub(crate) fn create(loc: PgLocation, meta: &Meta) -> Result<PgWriter, StoreError> {
        let (client, block) = super::outside_runtime(|| -> Result<(Client, i64), StoreError> {
            let mut client = connect(&loc)?;
            schema::prepare(&mut client, &loc, true, Some(meta))?;
            let block: i64 = client
                .query_one("SELECT nextval('connection_blocks')", &[])?
                .try_get(0)?;
            Ok((client, block))
        })?;
        let recorder = if meta.recorder.is_empty() {
            host_name()
        } else {
            meta.recorder.clone()
        };
        Ok(PgWriter {
            loc,
            client: Some(client),
            known: HashSet::new(),
            connection_base: u64::try_from(block).unwrap_or(1) << 32,
            recorder,
        })
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.client = Some(connect(&self.loc)?);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(StoreError::BadLocation {
                location: self.loc.display.clone(),
                reason: "no connection".into(),
            }),
        }
    }
}

/// This machine's name, the default recorder name.
pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and the NUL search below bounds the read either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl RecordingWrite for PgWriter {
    fn connection_id_base(&self) -> Result<u64, StoreError> {
        Ok(self.connection_base)
    }

    fn append(
        &mut self,
        batch: &[Exchange],
        rejected: &mut dyn FnMut(&Exchange, StoreError),
    ) -> Result<(), StoreError> {
        let mut rows = Rows::default();
        let mut stored: Vec<&Exchange> = Vec::with_capacity(batch.len());
        for ex in batch {
            match unstorable_text(ex) {
                Some(field) => rejected(
                    ex,
                    StoreError::Unstorable {
                        reason: format!(
                            "its {field} holds a NUL byte, which PostgreSQL text cannot"
                        ),
                    },
                ),
                None => stored.push(ex),
            }
        }
        if stored.is_empty() {
            return Ok(());
        }
        let recorder = self.recorder.clone();
        // Taken out for the batch (the connection needs `self` too), put back below.
        let known = std::mem::take(&mut self.known);
        let mut fresh = Fresh::new(&known);
        for ex in &stored {
            rows.push(ex, &recorder, &mut fresh);
        }
        let result = (|| -> Result<(), StoreError> {
            let client = self.client()?;
            let mut tx = client.transaction()?;
            let ids: Vec<i64> = tx
                .query(
                    "SELECT nextval('exchange_ids') FROM generate_series(1, $1::int8)",
                    &[&(stored.len() as i64)],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            rows.insert(&mut tx, &ids, &mut fresh)?;
            tx.commit()?;
            Ok(())
        })();
        let added = fresh.keys;
        self.known = known;
        match result {
            Ok(()) => {
                self.known.extend(added);
                Ok(())
            }
            Err(e) => {
                // Blobs of the rolled-back transaction may be missing: forget what this
                // writer thought it had stored.
                self.known.clear();
                if e.is_storage_failure() {
                    self.client = None;
                }
                Err(e)
            }
        }
    }

    fn replace_patterns(&mut self, patterns: &[PatternRow]) -> Result<(), StoreError> {
        let client = self.client()?;
        let mut tx = client.transaction()?;
        tx.execute("DELETE FROM patterns", &[])?;
        for p in patterns {
            tx.execute(
                "INSERT INTO patterns (kind, summary, detail) VALUES ($1, $2, $3)",
                &[&p.kind, &p.summary, &p.detail.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn close(&mut self) {
        // Every batch was committed as it was written: nothing is pending.
        self.client = None;
    }
}

/// The first text field of `ex` that PostgreSQL cannot hold (a NUL byte), if any.
fn unstorable_text(ex: &Exchange) -> Option<&'static str> {
    let has_nul = |s: &str| s.as_bytes().contains(&0);
    let resp = ex.response.as_ref();
    let fields: [(&'static str, Option<&str>); 10] = [
        ("method", Some(&ex.request.method)),
        ("target", Some(&ex.request.target)),
        ("version", Some(&ex.request.version)),
        ("scheme", Some(&ex.scheme)),
        ("authority", Some(&ex.authority)),
        ("client address", ex.client_addr.as_deref()),
        ("server address", ex.server_addr.as_deref()),
        ("reason phrase", resp.map(|r| r.reason.as_str())),
        ("response version", resp.map(|r| r.version.as_str())),
        ("error", ex.error.as_ref().map(|e| e.message.as_str())),
    ];
    fields
        .into_iter()
        .find(|(_, v)| v.is_some_and(has_nul))
        .map(|(name, _)| name)
        .or_else(|| {
            ex.trace_id
                .as_deref()
                .filter(|t| has_nul(t))
                .map(|_| "trace id")
        })
}

/// Blobs of one batch that this writer has not stored yet, encoded, sorted at insert time
/// (recorders inserting the same blobs lock them in one order and never deadlock).
struct Fresh<'a> {
    known: &'a HashSet<BlobKey>,
    keys: HashSet<BlobKey>,
    rows: Vec<(BlobKey, i64, i16, Vec<u8>)>,
}

impl<'a> Fresh<'a> {
    fn new(known: &'a HashSet<BlobKey>) -> Self {
        Fresh {
            known,
            keys: HashSet::new(),
            rows: Vec::new(),
        }
    }

    /// The key of `data`, queued for insertion unless already stored or queued.
    fn put(&mut self, data: &[u8]) -> Vec<u8> {
        let key = blobs::key_of(data);
        if !self.known.contains(&key) && self.keys.insert(key) {
            let (codec, stored) = blobs::encode(data);
            self.rows.push((
                key,
                data.len() as i64,
                i16::try_from(codec).unwrap_or(0),
                stored.into_owned(),
            ));
        }
        key.to_vec()
    }

    fn put_body(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        (!data.is_empty()).then(|| self.put(data))
    }
}

/// Column types of the `exchanges` COPY, in its column order.
const EXCHANGE_TYPES: [Type; 35] = [
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::INT8,
    Type::BOOL,
    Type::BYTEA,
    Type::INT4,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::INT8,
    Type::BOOL,
    Type::BYTEA,
    Type::INT8,
    Type::INT8,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
];

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stream message: (index of its exchange in the batch, idx, direction, offset, kind,
/// size, blob key).
type MessageRow = (usize, i32, i16, i64, String, i64, Option<Vec<u8>>);

/// One batch as column arrays, in `exchanges` column order (`id` comes at insert time).
#[derive(Default)]
struct Rows {
    recorder: Vec<String>,
    connection_id: Vec<i64>,
    seq: Vec<i64>,
    protocol: Vec<&'static str>,
    started_at_ns: Vec<i64>,
    client_addr: Vec<Option<String>>,
    server_addr: Vec<Option<String>>,
    scheme: Vec<String>,
    authority: Vec<String>,
    method: Vec<String>,
    target: Vec<String>,
    req_version: Vec<String>,
    req_headers: Vec<Vec<u8>>,
    req_body: Vec<Option<Vec<u8>>>,
    req_body_size: Vec<i64>,
    req_body_truncated: Vec<bool>,
    req_trailers: Vec<Option<Vec<u8>>>,
    status: Vec<Option<i32>>,
    reason: Vec<Option<String>>,
    resp_version: Vec<Option<String>>,
    resp_headers: Vec<Option<Vec<u8>>>,
    resp_body: Vec<Option<Vec<u8>>>,
    resp_body_size: Vec<i64>,
    resp_body_truncated: Vec<bool>,
    resp_trailers: Vec<Option<Vec<u8>>>,
    request_end_ns: Vec<Option<i64>>,
    response_first_byte_ns: Vec<Option<i64>>,
    response_end_ns: Vec<Option<i64>>,
    error: Vec<Option<String>>,
    trace_id: Vec<Option<String>>,
    tags: Vec<Option<String>>,
    error_kind: Vec<Option<String>>,
    req_body_chunks: Vec<Option<Vec<u8>>>,
    resp_body_chunks: Vec<Option<Vec<u8>>>,
    messages: Vec<MessageRow>,
}

impl Rows {
    fn push(&mut self, ex: &Exchange, recorder: &str, fresh: &mut Fresh<'_>) {
        let req = &ex.request;
        let resp = ex.response.as_ref();
        let trailers = |t: &[crate::model::Header]| (!t.is_empty()).then(|| encode_headers(t));
        let index = self.recorder.len();
        self.recorder.push(recorder.to_string());
        self.connection_id.push(clamp(ex.connection_id));
        self.seq.push(i64::from(ex.seq));
        self.protocol.push(ex.protocol().as_str());
        self.started_at_ns.push(ex.started_at_ns);
        self.client_addr
            .push(ex.client_addr.clone().map(Into::into));
        self.server_addr
            .push(ex.server_addr.clone().map(Into::into));
        self.scheme.push(if ex.scheme.is_empty() {
            "http".into()
        } else {
            ex.scheme.clone().into()
        });
        self.authority.push(ex.authority.clone().into());
        self.method.push(req.method.clone().into());
        self.target.push(req.target.clone().into());
        self.req_version.push(req.version.clone().into());
        self.req_headers
            .push(fresh.put(&encode_headers(&req.headers)));
        self.req_body.push(fresh.put_body(&req.body.data));
        self.req_body_size.push(clamp(req.body.size));
        self.req_body_truncated.push(req.body.truncated);
        self.req_trailers.push(trailers(&req.trailers));
        self.status.push(resp.map(|r| i32::from(r.status)));
        self.reason
            .push((resp.map(|r| r.reason.clone())).map(Into::into));
        self.resp_version
            .push((resp.map(|r| r.version.clone())).map(Into::into));
        self.resp_headers
            .push(resp.map(|r| encode_headers(&r.headers)));
        self.resp_body
            .push(resp.and_then(|r| fresh.put_body(&r.body.data)));
        self.resp_body_size
            .push(resp.map_or(0, |r| clamp(r.body.size)));
        self.resp_body_truncated
            .push(resp.is_some_and(|r| r.body.truncated));
        self.resp_trailers
            .push(resp.and_then(|r| trailers(&r.trailers)));
        self.request_end_ns
            .push(ex.timings.request_end_ns.map(clamp));
        self.response_first_byte_ns
            .push(ex.timings.response_first_byte_ns.map(clamp));
        self.response_end_ns
            .push(ex.timings.response_end_ns.map(clamp));
        self.error
            .push(ex.error.as_ref().map(|e| e.message.clone()));
        self.trace_id.push(ex.trace_id.clone());
        self.tags.push(if ex.tags.is_empty() {
            None
        } else {
            serde_json::to_string(&ex.tags).ok()
        });
        self.error_kind
            .push(ex.error.as_ref().map(|e| e.kind.as_str().to_string()));
        self.req_body_chunks.push(encode_chunks(&req.body.chunks));
        self.resp_body_chunks
            .push(resp.and_then(|r| encode_chunks(&r.body.chunks)));
        for (idx, m) in ex.messages.iter().enumerate() {
            let data = (!m.data.is_empty()).then(|| fresh.put(&m.data));
            self.messages.push((
                index,
                i32::try_from(idx).unwrap_or(i32::MAX),
                i16::from(matches!(m.direction, Direction::ServerToClient)),
                clamp(m.offset_ns),
                serde_json::to_string(&m.kind).unwrap_or_default(),
                m.data.len() as i64,
                data,
            ));
        }
    }

    /// Inserts the new blobs, the exchanges (with `ids`) and their messages.
    fn insert(
        &self,
        tx: &mut postgres::Transaction<'_>,
        ids: &[i64],
        fresh: &mut Fresh<'_>,
    ) -> Result<(), StoreError> {
        if !fresh.rows.is_empty() {
            fresh.rows.sort_by_key(|r| r.0);
            let hash: Vec<&[u8]> = fresh.rows.iter().map(|r| &r.0[..]).collect();
            let size: Vec<i64> = fresh.rows.iter().map(|r| r.1).collect();
            let codec: Vec<i16> = fresh.rows.iter().map(|r| r.2).collect();
            let data: Vec<&[u8]> = fresh.rows.iter().map(|r| &r.3[..]).collect();
            tx.execute(
                "INSERT INTO blobs (hash, size, codec, data)
                 SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int2[], $4::bytea[])
                 ON CONFLICT (hash) DO NOTHING",
                &[&hash, &size, &codec, &data],
            )?;
        }
        // COPY, not INSERT: the cheapest way into a table for the server, whose CPU is what
        // limits a recorder's rate (array parameters cost it twice as much per row).
        let sink = tx.copy_in(
            "COPY exchanges (
                id, recorder, connection_id, seq, protocol, started_at_ns, client_addr, server_addr,
                scheme, authority, method, target, req_version, req_headers, req_body, req_body_size,
                req_body_truncated, req_trailers, status, reason, resp_version, resp_headers,
                resp_body, resp_body_size, resp_body_truncated, resp_trailers, request_end_ns,
                response_first_byte_ns, response_end_ns, error, trace_id, tags, error_kind,
                req_body_chunks, resp_body_chunks) FROM STDIN (FORMAT binary)",
        )?;
        let mut w = BinaryCopyInWriter::new(sink, &EXCHANGE_TYPES);
        for (i, id) in ids.iter().enumerate().take(self.recorder.len()) {
            w.write(&[
                id,
                &self.recorder[i],
                &self.connection_id[i],
                &self.seq[i],
                &self.protocol[i],
                &self.started_at_ns[i],
                &self.client_addr[i],
                &self.server_addr[i],
                &self.scheme[i],
                &self.authority[i],
                &self.method[i],
                &self.target[i],
                &self.req_version[i],
                &self.req_headers[i],
                &self.req_body[i],
                &self.req_body_size[i],
                &self.req_body_truncated[i],
                &self.req_trailers[i],
                &self.status[i],
                &self.reason[i],
                &self.resp_version[i],
                &self.resp_headers[i],
                &self.resp_body[i],
                &self.resp_body_size[i],
                &self.resp_body_truncated[i],
                &self.resp_trailers[i],
                &self.request_end_ns[i],
                &self.response_first_byte_ns[i],
                &self.response_end_ns[i],
                &self.error[i],
                &self.trace_id[i],
                &self.tags[i],
                &self.error_kind[i],
                &self.req_body_chunks[i],
                &self.resp_body_chunks[i],
            ])?;
        }
        w.finish()?;
        if !self.messages.is_empty() {
            let m = &self.messages;
            let exchange: Vec<i64> = m
                .iter()
                .map(|r| ids.get(r.0).copied().unwrap_or(0))
                .collect();
            let idx: Vec<i32> = m.iter().map(|r| r.1).collect();
            let direction: Vec<i16> = m.iter().map(|r| r.2).collect();
            let offset: Vec<i64> = m.iter().map(|r| r.3).collect();
            let kind: Vec<&str> = m.iter().map(|r| r.4.as_str()).collect();
            let size: Vec<i64> = m.iter().map(|r| r.5).collect();
            let data: Vec<Option<&[u8]>> = m.iter().map(|r| r.6.as_deref()).collect();
            tx.execute(
                "INSERT INTO messages (exchange_id, idx, direction, offset_ns, kind, size, data)
                 SELECT * FROM unnest($1::int8[], $2::int4[], $3::int2[], $4::int8[], $5::text[],
                    $6::int8[], $7::bytea[])",
                &[&exchange, &idx, &direction, &offset, &kind, &size, &data],
            )?;
        }
        Ok(())
    }
}
