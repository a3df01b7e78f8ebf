//! Content-addressed, compressed blob storage.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use rusqlite::{params, Connection, OptionalExtension, Statement};

use super::StoreError;

/// Key of a blob: the first 16 bytes of its BLAKE3 hash (collision odds are negligible at
/// any recording size, and half the index of a full hash).
pub(super) type BlobKey = [u8; 16];

/// Hashes a [`BlobKey`] by taking its first 8 bytes: a key is already a uniform hash, so
/// SipHash over it (the std default) was pure cost on the writer thread.
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 16]` hashes as its length then its bytes: keep the first 8 bytes of the
        // longest write (the key), folding in anything else so other inputs still work.
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(5) ^ n as u64;
    }
}

/// The keys a writer knows are stored.
pub(super) type KnownBlobs = HashSet<BlobKey, BuildHasherDefault<KeyHasher>>;

/// The statement [`put`] runs.
pub(super) const INSERT_BLOB: &str =
    "INSERT OR IGNORE INTO blobs (hash, size, codec, data) VALUES (?1, ?2, ?3, ?4)";

const CODEC_RAW: i64 = 0;
const CODEC_ZSTD: i64 = 1;
/// Below this size zstd's frame overhead outweighs what it saves.
const MIN_COMPRESS: usize = 64;

pub(super) fn key_of(data: &[u8]) -> BlobKey {
    let mut key = [0u8; 16];
    key.copy_from_slice(&blake3::hash(data).as_bytes()[..16]);
    key
}

/// `data` compressed at zstd level 3 with this thread's compression context: creating a
/// context per blob (what `zstd::bulk::compress` does) cost more than compressing the
/// small bodies of an API recording.
fn compress(data: &[u8]) -> Option<Vec<u8>> {
    thread_local! {
        static CCTX: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CCTX.with(|cell| {
        let mut cctx = cell.borrow_mut();
        if cctx.is_none() {
            *cctx = zstd::bulk::Compressor::new(3).ok();
        }
        cctx.as_mut()?.compress(data).ok()
    })
}

/// How `data` is stored: its codec and the stored bytes (zstd when that is smaller). Every
/// backend stores blobs this way.
pub(super) fn encode(data: &[u8]) -> (i64, Vec<u8>) {
    if data.len() >= MIN_COMPRESS {
        match compress(data) {
            Some(c) if c.len() < data.len() => (CODEC_ZSTD, c),
            _ => (CODEC_RAW, data.to_vec()),
        }
    } else {
        (CODEC_RAW, data.to_vec())
    }
}

/// Stores `data` once with `insert` (a prepared [`INSERT_BLOB`]); remembers stored keys so
/// repeats cost one hash and no query.
pub(super) fn put(
    insert: &mut Statement<'_>,
    known: &mut KnownBlobs,
    data: &[u8],
) -> Result<BlobKey, StoreError> {
    let key = key_of(data);
    if known.contains(&key) {
        return Ok(key);
    }
    let (codec, stored) = encode(data);
    insert.execute(params![&key[..], data.len() as i64, codec, stored])?;
    known.insert(key);
    Ok(key)
}

/// Loads a blob by key.
pub(super) fn get(conn: &Connection, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    let row: Option<(i64, i64, Vec<u8>)> = conn
        .prepare_cached("SELECT size, codec, data FROM blobs WHERE hash = ?1")?
        .query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((size, codec, data)) = row else {
        return Err(StoreError::Corrupt {
            path: "recording".into(),
            reason: "a body refers to a missing blob".into(),
        });
    };
    decode(size, codec, data)
}

/// A stored blob row back to its bytes.
pub(super) fn decode(size: i64, codec: i64, data: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: "recording".into(),
        reason,
    };
    match codec {
        CODEC_RAW => Ok(data),
        CODEC_ZSTD => {
            let cap = usize::try_from(size).map_err(|_| corrupt("bad blob size".into()))?;
            // One decompression context per thread: creating one per blob was 5% of `mf infer`.
            thread_local! {
                static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
            }
            DCTX.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| corrupt(format!("zstd: {e}")))?,
                    );
                }
                match slot.as_mut() {
                    Some(d) => d
                        .decompress(&data, cap)
                        .map_err(|e| corrupt(format!("blob does not decompress: {e}"))),
                    None => Err(corrupt("zstd context unavailable".into())),
                }
            })
        }
        other => Err(corrupt(format!("unknown blob codec {other}"))),
    }
}
