//! What one walk over a recording already decoded, kept for the rows after it.

use std::collections::HashMap;

use bytes::Bytes;

use super::codec::decode_headers;
use crate::model::Header;

/// Largest blob a walk keeps decoded for the rows after it (a bigger one is rarely shared).
const MEMO_MAX_BLOB: usize = 64 * 1024;
/// Decoded bytes a walk keeps at most; it starts over empty when full (memory stays flat
/// however many distinct blobs the recording holds).
const MEMO_MAX_BYTES: usize = 8 << 20;

/// What one walk over the recording already decoded: blobs by key (identical request bodies
/// and header blocks share one, so a recording of the same request over and over has a
/// handful), and the last inline header block (answers of one server differ mostly by their
/// `date`, and rows of the same second are alike). Decoding each row anew was ~20% of a
/// `replay --to --speed max` profile: SQLite copies, zstd, header parsing, page zeroing.
#[derive(Default)]
pub(super) struct BlobMemo {
    bodies: HashMap<Vec<u8>, Bytes, foldhash::fast::RandomState>,
    headers: HashMap<Vec<u8>, Vec<Header>, foldhash::fast::RandomState>,
    bytes: usize,
    last_inline: Vec<u8>,
    last_decoded: Vec<Header>,
}

impl BlobMemo {
    pub(super) fn body(&self, key: &[u8]) -> Option<Bytes> {
        self.bodies.get(key).cloned()
    }

    /// Sets `dst` to the headers kept for `key` (reusing its allocations), or says there are
    /// none kept.
    pub(super) fn headers_into(&self, key: &[u8], dst: &mut Vec<Header>) -> bool {
        match self.headers.get(key) {
            Some(headers) => {
                dst.clone_from(headers);
                true
            }
            None => false,
        }
    }

    /// Room for `len` more bytes, or false when a blob that large is not kept.
    fn room(&mut self, len: usize) -> bool {
        if len > MEMO_MAX_BLOB {
            return false;
        }
        if self.bytes + len > MEMO_MAX_BYTES {
            self.bodies.clear();
            self.headers.clear();
            self.bytes = 0;
        }
        self.bytes += len;
        true
    }

    pub(super) fn keep_body(&mut self, key: &[u8], data: &Bytes) {
        if self.room(key.len() + data.len()) {
            self.bodies.insert(key.to_vec(), data.clone());
        }
    }

    pub(super) fn keep_headers(&mut self, key: &[u8], raw_len: usize, headers: &[Header]) {
        if self.room(key.len() + raw_len) {
            self.headers.insert(key.to_vec(), headers.to_vec());
        }
    }

    /// Sets `dst` to an inline header block decoded, or to the last one's headers again when
    /// it is the same; `dst` keeps its allocations where it can (a walk refills one exchange).
    pub(super) fn inline_into(&mut self, raw: &[u8], dst: &mut Vec<Header>) {
        if raw != self.last_inline.as_slice() {
            self.last_decoded = decode_headers(raw);
            self.last_inline.clear();
            self.last_inline.extend_from_slice(raw);
        }
        dst.clone_from(&self.last_decoded);
    }
}
