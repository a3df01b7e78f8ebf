//! What counts as a secret in HTTP traffic, and what a redacted value looks like: the one set
//! of rules shared by capture (nothing secret is stored), `mf export` (sanitised by default),
//! replay (a redacted value matches any value) and `mf infer` (its fixture scrub).
//!
//! A redacted value becomes a placeholder `mf-redacted-<12 hex>`: the first 6 bytes of
//! HMAC-SHA256 of the secret under a random key that lives only in the memory of the process
//! doing the redaction. The same secret gives the same placeholder within one recording
//! session (so a token issued by a login and sent back later stays one value for `mf infer`),
//! while a recording alone does not let anyone test guesses: the key is never written down.
//!
//! Pure functions (the key is handed in); imports `model` only.

mod body;
mod exchange;
mod wild;

#[cfg(test)]
mod tests;

use ring::hmac;

pub use body::Redaction;
pub use exchange::redact_exchange;
pub use wild::{json_matches, raw_matches};

/// What a secret is shown as where no placeholder is needed (fixtures, diff reports).
pub const REDACTED: &str = "<redacted>";

/// The default rules (no `--redact` names), for readers that only ask whether a name is
/// a secret's.
pub fn default_rules() -> &'static Rules {
    static DEFAULT: std::sync::OnceLock<Rules> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(|| Rules::new(&[]))
}

/// Every placeholder starts with this.
pub const PLACEHOLDER_PREFIX: &str = "mf-redacted-";

/// Hex digits after [`PLACEHOLDER_PREFIX`].
const PLACEHOLDER_HEX: usize = 12;

/// Length of a whole placeholder.
pub const PLACEHOLDER_LEN: usize = PLACEHOLDER_PREFIX.len() + PLACEHOLDER_HEX;

/// Header names whose values are credentials whatever their content.
const HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-amz-security-token",
];

/// Words that make a header name a secret wherever they appear in it (`X-Csrf-Token`).
const HEADER_WORDS: &[&str] = &["token", "secret", "api-key", "apikey", "password"];

/// Query and form parameter names that carry credentials in common APIs, beyond the field
/// rules below (`?key=` is Google's API key, `sig` a signed URL's signature).
const PARAMS: &[&str] = &["key", "sig", "signature", "auth"];

/// Field names (JSON, form, multipart, query) that are secrets exactly.
const FIELDS: &[&str] = &[
    "password",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "api_key",
    "apikey",
    "api-key",
];

/// Words that make a field name a secret wherever they appear in it (`user_password`).
const FIELD_WORDS: &[&str] = &[
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "api-key",
    "apikey",
    "credential",
    "private_key",
];

/// Name parts that describe a secret without being one (`token_type: bearer`,
/// `password_policy`), or that name a pagination cursor (`next_page_token`): redacting a
/// cursor would make every page of a listing match every other at replay.
const DESCRIPTIVE: &[&str] = &[
    "_type",
    "_policy",
    "_hint",
    "_expires",
    "_length",
    "page",
    "next",
    "cursor",
    "continuation",
    "sync",
];

/// Which names are secrets: the built-in rules plus the user's `--redact` names and JSON
/// paths.
#[derive(Clone, Debug)]
pub struct Rules {
    /// Lower-case extra names: a header, a parameter or a JSON field at any depth.
    extra: Vec<String>,
    /// Extra JSON paths (`$.user.ssn` → `["user", "ssn"]`); arrays along the way are
    /// transparent (`$.users.ssn` covers every user).
    paths: Vec<Vec<String>>,
    /// Finds any word a secret field name must contain, in lower case, in text folded to
    /// lower case: a body without one is not parsed at all (most bodies, on the proxy's hot
    /// path).
    words: Words,
    /// The longest of those words, in bytes: how much folded chunks overlap.
    longest_word: usize,
}

/// The lower-case words searched for in folded text.
#[derive(Clone, Debug)]
enum Words {
    /// No automaton could be built: every body may hold a secret.
    Unknown,
    /// One vectorised pass for all the words (Teddy, a SIMD multi-substring search), where the
    /// CPU has it. One substring search per word (below) read each body a dozen times: in a
    /// callgrind profile of the recording proxy on a 700-byte JSON answer that was 4,200
    /// instructions per exchange, 9% of all it did.
    Packed(aho_corasick::packed::Searcher),
    /// One vectorised substring search per word: with the built-in dozen words and a body
    /// of a few hundred bytes this is several times faster than an automaton stepping every
    /// byte (which was the proxy's top user-space cost per exchange).
    Few(Vec<memchr::memmem::Finder<'static>>),
    /// Many `--redact` names: one pass of an automaton beats a pass per word.
    Many(aho_corasick::AhoCorasick),
}

/// Above this many words, [`Words::Many`].
const FEW_WORDS: usize = 24;

impl Words {
    fn is_match(&self, folded: &[u8]) -> bool {
        match self {
            Words::Unknown => true,
            Words::Packed(searcher) => searcher.find(folded).is_some(),
            Words::Few(finders) => finders.iter().any(|f| f.find(folded).is_some()),
            Words::Many(ac) => ac.is_match(folded),
        }
    }
}

impl Default for Rules {
    fn default() -> Self {
        Rules::new(&[])
    }
}

impl Rules {
    /// The built-in rules plus `extra`: each a name, or a JSON path starting with `$.`.
    pub fn new(extra: &[String]) -> Rules {
        let mut rules = Rules {
            extra: Vec::new(),
            paths: Vec::new(),
            words: Words::Unknown,
            longest_word: 0,
        };
        for e in extra {
            match e.strip_prefix("$.") {
                Some(path) => rules.paths.push(
                    path.split('.')
                        .map(|s| s.trim_end_matches("[*]").to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                ),
                None => rules.extra.push(e.trim().to_ascii_lowercase()),
            }
        }
        // Every built-in field name contains one of FIELD_WORDS; PARAMS only matter in
        // form bodies, which are small.
        let words: Vec<String> = FIELD_WORDS
            .iter()
            .chain(PARAMS)
            .map(|w| w.to_string())
            .chain(rules.extra.iter().cloned())
            .chain(rules.paths.iter().filter_map(|p| p.last().cloned()))
            .map(|w| w.to_ascii_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        rules.longest_word = words.iter().map(String::len).max().unwrap_or(0);
        // Case-sensitive words searched in folded text, not a case-insensitive search: the
        // case-insensitive automaton has no SIMD prefilter and steps every byte, while
        // lower-case words can use vectorised searches. Folding is a cheap pass over a stack
        // buffer.
        let packed = (words.len() <= FEW_WORDS)
            .then(|| aho_corasick::packed::Searcher::new(words.iter()))
            .flatten();
        rules.words = if let Some(searcher) = packed {
            Words::Packed(searcher)
        } else if words.len() <= FEW_WORDS {
            Words::Few(
                words
                    .iter()
                    .map(|w| memchr::memmem::Finder::new(w.as_bytes()).into_owned())
                    .collect(),
            )
        } else {
            aho_corasick::AhoCorasick::builder()
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(&words)
                .map_or(Words::Unknown, Words::Many)
        };
        rules
    }

    /// False when `data` cannot hold a secret field: no name the rules know occurs in it,
    /// ignoring ASCII case.
    pub fn may_hold_secret_field(&self, data: &[u8]) -> bool {
        if matches!(self.words, Words::Unknown) {
            return true;
        }
        // The folding buffer is sized to the data: a zeroed 4 KiB array for every small
        // body was ~4k instructions (a memset) per exchange in the proxy's profile.
        match data.len() {
            0..=256 => self.scan_folded::<256>(data),
            257..=1024 => self.scan_folded::<1024>(data),
            _ => self.scan_folded::<4096>(data),
        }
    }

    /// [`Rules::may_hold_secret_field`], folding `CHUNK` bytes at a time.
    fn scan_folded<const CHUNK: usize>(&self, data: &[u8]) -> bool {
        // A word longer than half a chunk could be missed across chunks: say "maybe".
        if self.longest_word > CHUNK / 2 && data.len() > CHUNK {
            return true;
        }
        let overlap = self.longest_word.saturating_sub(1);
        let mut folded = [0u8; CHUNK];
        let mut start = 0;
        loop {
            let end = (start + CHUNK).min(data.len());
            let piece = &data[start..end];
            let buf = &mut folded[..piece.len()];
            buf.copy_from_slice(piece);
            buf.make_ascii_lowercase();
            if self.words.is_match(&*buf) {
                return true;
            }
            if end == data.len() {
                return false;
            }
            // The next chunk repeats the last `overlap` bytes, so a word straddling the
            // boundary is seen whole.
            start = end - overlap;
        }
    }

    fn is_extra(&self, name: &str) -> bool {
        self.extra.iter().any(|e| e.eq_ignore_ascii_case(name))
    }

    /// True when a header of this name carries a secret. It runs for every header of every
    /// exchange the proxy records: it allocates only to remember a name over 24 bytes long.
    pub fn is_secret_header(&self, name: &str) -> bool {
        builtin_secret_header(name) || self.is_extra(name)
    }

    /// True when a query or form-urlencoded parameter of this name carries a secret.
    pub fn is_secret_param(&self, name: &str) -> bool {
        PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name)) || self.is_secret_field(name)
    }

    /// True when a JSON, form or multipart field of this name carries a secret.
    pub fn is_secret_field(&self, name: &str) -> bool {
        FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name))
            || (FIELD_WORD_SET.found_in(name) && !is_descriptive(name))
            || self.is_extra(name)
    }

    /// True when the JSON value at `path` (object keys from the root, arrays skipped) is one
    /// of the user's `$.` paths.
    pub fn is_secret_path(&self, path: &[&str]) -> bool {
        self.paths.iter().any(|p| {
            p.len() == path.len() && p.iter().zip(path).all(|(a, b)| a.eq_ignore_ascii_case(b))
        })
    }
}

/// Whether the built-in rules call a header of this name a secret, remembered per thread
/// for the names seen last.
///
/// Why: every header of every recorded exchange is asked, and the same few dozen names come
/// back on every request. Judging a name anew (the list of exact names, then the word
/// search) was ~130 instructions a header, 1,800 of a proxied request (callgrind); finding
/// it in the table is a length, two bytes and one comparison.
fn builtin_secret_header(name: &str) -> bool {
    /// Slots of the table: a direct-mapped cache, so a name only ever costs one comparison.
    const SLOTS: usize = 64;
    thread_local! {
        static SEEN: std::cell::RefCell<Vec<Option<(crate::model::Text, bool)>>> =
            std::cell::RefCell::new(vec![None; SLOTS]);
    }
    let judge = |name: &str| {
        HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name))
            || (HEADER_WORD_SET.found_in(name) && !is_descriptive(name))
    };
    let bytes = name.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    let slot = (bytes.len() * 31 + usize::from(first) * 7 + usize::from(last)) % SLOTS;
    SEEN.try_with(|seen| {
        let mut seen = seen.borrow_mut();
        match &seen[slot] {
            Some((known, verdict)) if known.as_str() == name => *verdict,
            _ => {
                let verdict = judge(name);
                seen[slot] = Some((name.into(), verdict));
                verdict
            }
        }
    })
    // During thread teardown the table is gone: judge without it.
    .unwrap_or_else(|_| judge(name))
}

fn is_descriptive(name: &str) -> bool {
    DESCRIPTIVE_SET.found_in(name)
}

static HEADER_WORD_SET: WordSet = WordSet::new(HEADER_WORDS);
static FIELD_WORD_SET: WordSet = WordSet::new(FIELD_WORDS);
static DESCRIPTIVE_SET: WordSet = WordSet::new(DESCRIPTIVE);

/// Lower-case words to find inside a name, ignoring ASCII case, with the words each byte
/// can begin and continue: a name is read once and compared only where one of them could
/// start with its first two bytes. Asking each word in turn whether it occurs (a window
/// comparison at every position) was ~240 instructions per header name, run for every
/// header of every exchange recorded; a first-byte table alone still compared at most
/// positions (`t`, `a`, `p` and `s` are everywhere in header names).
struct WordSet {
    words: &'static [&'static str],
    /// Bit `i` set for the bytes (either case) that `words[i]` starts with.
    first: [u32; 256],
    /// Bit `i` set for the bytes (either case) that are `words[i]`'s second.
    second: [u32; 256],
}

impl WordSet {
    const fn new(words: &'static [&'static str]) -> WordSet {
        assert!(words.len() <= 32, "a word set holds at most 32 words");
        let mut first = [0u32; 256];
        let mut second = [0u32; 256];
        let mut i = 0;
        while i < words.len() {
            let word = words[i].as_bytes();
            assert!(word.len() >= 2, "words are found by their first two bytes");
            let bit = 1u32 << i;
            first[word[0] as usize] |= bit;
            first[word[0].to_ascii_uppercase() as usize] |= bit;
            second[word[1] as usize] |= bit;
            second[word[1].to_ascii_uppercase() as usize] |= bit;
            i += 1;
        }
        WordSet {
            words,
            first,
            second,
        }
    }

    /// True when `hay` contains one of the words, ignoring ASCII case.
    fn found_in(&self, hay: &str) -> bool {
        let hay = hay.as_bytes();
        let mut starting = 0u32;
        for (at, &b) in hay.iter().enumerate() {
            // Words whose first byte was the previous byte and whose second is this one.
            let mut bits = starting & self.second[usize::from(b)];
            while bits != 0 {
                let word = self.words[bits.trailing_zeros() as usize].as_bytes();
                if hay
                    .get(at - 1..at - 1 + word.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(word))
                {
                    return true;
                }
                bits &= bits - 1;
            }
            starting = self.first[usize::from(b)];
        }
        false
    }
}

/// Derives placeholders: HMAC-SHA256 under a key that only this process knows.
pub struct Placeholders {
    key: hmac::Key,
}

impl std::fmt::Debug for Placeholders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key itself is never shown.
        f.write_str("Placeholders")
    }
}

/// The system's random source failed: no key can be made.
#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed; cannot make a redaction key")]
pub struct NoRandomKey;

impl Placeholders {
    /// A fresh random key, for one recording session.
    ///
    /// # Errors
    /// The system random source failed.
    pub fn random() -> Result<Placeholders, NoRandomKey> {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| NoRandomKey)?;
        Ok(Placeholders { key })
    }

    /// A fixed key: for tests, where placeholders must be predictable.
    pub fn with_key(key: &[u8]) -> Placeholders {
        Placeholders {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// The placeholder of `secret`; a value that already is a placeholder stays as it is, so
    /// redacting twice (capture, then export) changes nothing.
    pub fn of(&self, secret: &str) -> String {
        if is_placeholder(secret) {
            return secret.to_string();
        }
        let tag = hmac::sign(&self.key, secret.as_bytes());
        let mut out = String::with_capacity(PLACEHOLDER_LEN);
        out.push_str(PLACEHOLDER_PREFIX);
        for b in &tag.as_ref()[..PLACEHOLDER_HEX / 2] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// True when `s` is exactly one placeholder.
pub fn is_placeholder(s: &str) -> bool {
    s.len() == PLACEHOLDER_LEN
        && s.starts_with(PLACEHOLDER_PREFIX)
        && s[PLACEHOLDER_PREFIX.len()..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Where placeholders start in `data`, in order (each a whole placeholder).
pub fn placeholder_spans(data: &[u8]) -> Vec<std::ops::Range<usize>> {
    let prefix = PLACEHOLDER_PREFIX.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&data[from..], prefix) {
        let start = from + i;
        let end = start + PLACEHOLDER_LEN;
        if end <= data.len()
            && data[start + prefix.len()..end]
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            spans.push(start..end);
            from = end;
        } else {
            from = start + 1;
        }
    }
    spans
}

/// True when `data` holds a placeholder anywhere.
pub fn contains_placeholder(data: &[u8]) -> bool {
    !placeholder_spans(data).is_empty()
}

/// `target` fit for a log line: the values of secret query parameters (built-in rules)
/// replaced by `<redacted>`. Live requests carry real credentials, which no log may show.
pub fn log_target(target: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return target.into();
    };
    static RULES: std::sync::OnceLock<Rules> = std::sync::OnceLock::new();
    let rules = RULES.get_or_init(Rules::default);
    let mut changed = false;
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !v.is_empty() && rules.is_secret_param(k) => {
                changed = true;
                format!("{k}=<redacted>")
            }
            _ => pair.to_string(),
        })
        .collect();
    if changed {
        format!("{path}?{}", pairs.join("&")).into()
    } else {
        target.into()
    }
}
