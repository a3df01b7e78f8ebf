//! Content-addressed, compressed blob storage.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use rusqlite::{params, Connection, OptionalExtension};

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

/// Blobs up to this size are remembered by content (see [`KnownBlobs`]).
const RECENT_MAX_BLOB: usize = 256 << 10;
/// Bytes of remembered blob contents; past it the memory starts over empty.
const RECENT_BUDGET: usize = 16 << 20;
/// Remembered blobs sharing one sample before the oldest is replaced: bounds the
/// comparisons a lookup can cost.
const RECENT_PER_SAMPLE: usize = 4;

/// Length and a few bytes of a blob (all of it when short): blobs that share it are compared
/// whole, so the sample only has to be cheap, not unique.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Sample {
    len: usize,
    bytes: [u8; 48],
}

impl Sample {
    fn of(data: &[u8]) -> Sample {
        let mut bytes = [0u8; 48];
        let n = data.len();
        if n <= 48 {
            bytes[..n].copy_from_slice(data);
        } else {
            let mid = n / 2 - 8;
            bytes[..16].copy_from_slice(&data[..16]);
            bytes[16..32].copy_from_slice(&data[mid..mid + 16]);
            bytes[32..].copy_from_slice(&data[n - 16..]);
        }
        Sample { len: n, bytes }
    }
}

/// A remembered blob: its key and a copy of its bytes.
type Kept = (BlobKey, Box<[u8]>);

/// The blobs a writer knows are stored: every key, and the contents of recent blobs.
///
/// A repeated body (the same JSON answer, an empty object, an error page) is then found by a
/// comparison with a kept copy instead of a BLAKE3 hash: on a lossy capture of API traffic
/// hashing was a quarter of the writer thread, and comparing runs at memory speed.
#[derive(Default)]
pub(super) struct KnownBlobs {
    keys: HashSet<BlobKey, BuildHasherDefault<KeyHasher>>,
    recent: HashMap<Sample, Vec<Kept>, foldhash::fast::RandomState>,
    recent_bytes: usize,
}

impl KnownBlobs {
    /// Forgets everything (the transaction that stored the blobs rolled back).
    pub(super) fn clear(&mut self) {
        self.keys.clear();
        self.forget_contents();
    }

    fn forget_contents(&mut self) {
        self.recent.clear();
        self.recent_bytes = 0;
    }

    /// The key of `data` when a recent blob had the same bytes.
    fn recent_key(&self, sample: &Sample, data: &[u8]) -> Option<BlobKey> {
        let kept = self.recent.get(sample)?;
        kept.iter()
            .find(|(_, bytes)| bytes[..] == *data)
            .map(|(key, _)| *key)
    }

    /// Remembers the contents of a stored blob.
    fn remember(&mut self, sample: Sample, key: BlobKey, data: &[u8]) {
        if data.len() > RECENT_MAX_BLOB {
            return;
        }
        if self.recent_bytes + data.len() > RECENT_BUDGET {
            self.forget_contents();
        }
        self.recent_bytes += data.len();
        let kept = self.recent.entry(sample).or_default();
        if kept.len() >= RECENT_PER_SAMPLE {
            let (_, old) = kept.remove(0);
            self.recent_bytes -= old.len();
        }
        kept.push((key, data.into()));
    }
}

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

/// How `data` is stored: its codec and the stored bytes (zstd when that is smaller, else
/// `data` itself, borrowed). Every backend stores blobs this way.
pub(super) fn encode(data: &[u8]) -> (i64, Cow<'_, [u8]>) {
    if data.len() >= MIN_COMPRESS {
        if let Some(c) = compress(data).filter(|c| c.len() < data.len()) {
            return (CODEC_ZSTD, Cow::Owned(c));
        }
    }
    (CODEC_RAW, Cow::Borrowed(data))
}

/// Stores `data` once with `insert` (a prepared [`INSERT_BLOB`]); remembers stored blobs so
/// repeats cost a comparison (or, past the content memory, one hash) and no query.
pub(super) fn put(
    insert: &mut super::raw_stmt::RawInsert<'_>,
    known: &mut KnownBlobs,
    data: &[u8],
) -> Result<BlobKey, StoreError> {
    let sample = Sample::of(data);
    if let Some(key) = known.recent_key(&sample, data) {
        return Ok(key);
    }
    let key = key_of(data);
    if !known.keys.contains(&key) {
        let (codec, stored) = encode(data);
        use super::raw_stmt::Val;
        insert.run(&[
            Val::Blob(&key),
            Val::Int(data.len() as i64),
            Val::Int(codec),
            Val::Blob(&stored),
        ])?;
        known.keys.insert(key);
    }
    known.remember(sample, key, data);
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
    if codec == CODEC_RAW {
        return Ok(data);
    }
    decode_slice(size, codec, &data)
}

/// As [`decode`], from bytes SQLite still holds: a compressed blob is not copied first.
pub(super) fn decode_slice(size: i64, codec: i64, data: &[u8]) -> Result<Vec<u8>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: "recording".into(),
        reason,
    };
    match codec {
        CODEC_RAW => Ok(data.to_vec()),
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
                        .decompress(data, cap)
                        .map_err(|e| corrupt(format!("blob does not decompress: {e}"))),
                    None => Err(corrupt("zstd context unavailable".into())),
                }
            })
        }
        other => Err(corrupt(format!("unknown blob codec {other}"))),
    }
}
