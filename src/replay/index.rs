//! The compact parts of the index a replay keeps of its recording: strings interned once in
//! one arena (methods, authorities, paths and queries repeat across a recording, and a 1M
//! exchange recording must fit its index in a few tens of MiB), and request body keys kept
//! as fixed-size hashes in a table of their own. Pure: no I/O.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// An id that no interned string or body key has: what a probe gets for a value the
/// recording never saw, so that it equals nothing.
pub(crate) const UNKNOWN: u32 = u32::MAX;

/// Strings stored once each, by id. Written by hand over `hashbrown`'s raw table because the
/// interner crates keep each string in an allocation of its own (plus a copy in their map),
/// which doubles what a recording's distinct paths cost.
#[derive(Default)]
pub(crate) struct Strings {
    text: String,
    /// Per id: where its text starts in `text` and its length.
    spans: Vec<(u32, u32)>,
    table: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Strings {
    /// The id of `s`, storing it when new.
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(id) = self.get(s) {
            return id;
        }
        let id = u32::try_from(self.spans.len()).unwrap_or(UNKNOWN);
        let start = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        self.text.push_str(s);
        self.spans
            .push((start, u32::try_from(s.len()).unwrap_or(u32::MAX)));
        let hash = self.hasher.hash_one(s);
        let Strings {
            table,
            hasher,
            text,
            spans,
        } = self;
        table.insert_unique(hash, id, |&i| hasher.hash_one(span_str(text, spans, i)));
        id
    }

    /// The id of `s`, if it was interned.
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(s);
        self.table
            .find(hash, |&i| span_str(&self.text, &self.spans, i) == s)
            .copied()
    }

    /// The text of `id` (empty for [`UNKNOWN`]).
    pub(crate) fn str(&self, id: u32) -> &str {
        span_str(&self.text, &self.spans, id)
    }

    /// Number of distinct strings.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Bytes held, for the start-up report.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.spans.capacity() * 8 + self.table.capacity() * 5
    }
}

fn span_str<'a>(text: &'a str, spans: &[(u32, u32)], id: u32) -> &'a str {
    spans
        .get(id as usize)
        .and_then(|&(s, n)| text.get(s as usize..(s as usize + n as usize)))
        .unwrap_or("")
}

/// How a request body is compared: absent, JSON compared by meaning, or bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BodyKey {
    Empty,
    /// Hash of the canonical JSON text (object keys sorted), so `{"a":1,"b":2}` equals
    /// `{"b":2,"a":1}`.
    Json([u8; 16]),
    Raw([u8; 16]),
}

/// The first 16 bytes of the BLAKE3 hash of `data`: collisions stay negligible at any
/// recording size, at half the size of the whole hash.
pub(crate) fn short_hash(data: &[u8]) -> [u8; 16] {
    let mut key = [0u8; 16];
    key.copy_from_slice(&blake3::hash(data).as_bytes()[..16]);
    key
}

/// The key of a request body.
pub(crate) fn body_key(body: &[u8]) -> BodyKey {
    if body.is_empty() {
        return BodyKey::Empty;
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'[')) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            return BodyKey::Json(short_hash(canonical_json(&value).as_bytes()));
        }
    }
    BodyKey::Raw(short_hash(body))
}

/// JSON text with object keys sorted at every level.
pub(crate) fn canonical_json(v: &serde_json::Value) -> String {
    crate::store::fixtures::sorted_json(v).to_string()
}

/// Body keys stored once each, by id (most requests have no body, and repeated bodies are
/// common).
#[derive(Default)]
pub(crate) struct BodyKeys {
    keys: Vec<BodyKey>,
    ids: std::collections::HashMap<BodyKey, u32>,
}

impl BodyKeys {
    /// The id of `key`, storing it when new.
    pub(crate) fn intern(&mut self, key: BodyKey) -> u32 {
        let next = u32::try_from(self.keys.len()).unwrap_or(UNKNOWN);
        *self.ids.entry(key).or_insert_with(|| {
            self.keys.push(key);
            next
        })
    }

    /// The id of `key`, if some recorded request had it.
    pub(crate) fn get(&self, key: &BodyKey) -> Option<u32> {
        self.ids.get(key).copied()
    }

    /// The key of `id` (`Empty` for [`UNKNOWN`]).
    pub(crate) fn key(&self, id: u32) -> BodyKey {
        self.keys
            .get(id as usize)
            .copied()
            .unwrap_or(BodyKey::Empty)
    }

    /// Bytes held, for the start-up report.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.keys.capacity() * 17 + self.ids.capacity() * 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_stored_once_and_found_by_text() {
        let mut s = Strings::default();
        let a = s.intern("/users/1");
        let b = s.intern("/users/2");
        assert_eq!(s.intern("/users/1"), a);
        assert_ne!(a, b);
        assert_eq!(s.str(b), "/users/2");
        assert_eq!(s.get("/users/3"), None);
        assert_eq!(s.str(UNKNOWN), "");
        assert_eq!(s.len(), 2);
        for i in 0..10_000 {
            s.intern(&format!("/p/{i}"));
        }
        assert_eq!(s.get("/p/9999").map(|id| s.str(id)), Some("/p/9999"));
        assert_eq!(s.get("/users/1"), Some(a));
    }

    #[test]
    fn json_bodies_are_keyed_by_meaning_and_others_by_bytes() {
        assert_eq!(body_key(b""), BodyKey::Empty);
        assert_eq!(
            body_key(br#"{"a":1,"b":2}"#),
            body_key(br#" {"b": 2, "a": 1}"#)
        );
        assert!(matches!(body_key(br#"{"a":1}"#), BodyKey::Json(_)));
        assert!(matches!(body_key(b"{not json"), BodyKey::Raw(_)));
        let mut t = BodyKeys::default();
        let id = t.intern(body_key(b"x"));
        assert_eq!(t.intern(body_key(b"x")), id);
        assert_eq!(t.key(id), body_key(b"x"));
        assert_eq!(t.get(&body_key(b"y")), None);
    }
}
