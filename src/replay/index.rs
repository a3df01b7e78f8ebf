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

pub(crate) use crate::store::{body_key, canonical_json, short_hash, BodyKey};

/// Body keys stored once each, by id (most requests have no body, and repeated bodies are
/// common).
#[derive(Default)]
pub(crate) struct BodyKeys {
    keys: Vec<BodyKey>,
    /// `hashbrown`'s default hasher rather than SipHash: a key is interned for every
    /// recorded request, and SipHash over its 17 bytes was most of the cost.
    ids: hashbrown::HashMap<BodyKey, u32>,
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
    fn body_keys_are_stored_once() {
        let mut t = BodyKeys::default();
        let id = t.intern(body_key(b"x"));
        assert_eq!(t.intern(body_key(b"x")), id);
        assert_eq!(t.key(id), body_key(b"x"));
        assert_eq!(t.get(&body_key(b"y")), None);
    }
}
