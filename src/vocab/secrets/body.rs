//! Redacting values where HTTP carries them: header values, query strings and
//! form-urlencoded bodies, JSON at any depth, multipart/form-data parts.

use serde_json::Value;

use super::{is_placeholder, Placeholders, Rules};

/// Secrets shorter than this are replaced where their name says so, but not searched for
/// elsewhere: short values ("1", "on") would scrub innocent text.
const MIN_SCRUB_LEN: usize = 8;

/// Cap on the secrets one redaction remembers for its scrub.
const MAX_SEEN: usize = 256;

/// One redaction pass (typically over one exchange): the rules, the key, and the secrets
/// replaced so far, so that [`Redaction::scrub`] can replace them where they were echoed.
#[derive(Debug)]
pub struct Redaction<'a> {
    rules: &'a Rules,
    keys: &'a Placeholders,
    /// Secrets replaced so far, each with its placeholder.
    seen: Vec<(String, String)>,
    /// How many values were replaced.
    pub count: u64,
}

impl<'a> Redaction<'a> {
    /// A pass applying `rules`, deriving placeholders with `keys`.
    pub fn new(rules: &'a Rules, keys: &'a Placeholders) -> Redaction<'a> {
        Redaction {
            rules,
            keys,
            seen: Vec::new(),
            count: 0,
        }
    }

    /// The rules this pass applies.
    pub fn rules(&self) -> &Rules {
        self.rules
    }

    /// The placeholder for `secret` (remembered for the scrub). Empty values and values
    /// that already are placeholders stay as they are.
    pub fn value(&mut self, secret: &str) -> String {
        if secret.is_empty() || is_placeholder(secret) {
            return secret.to_string();
        }
        let placeholder = self.keys.of(secret);
        self.count += 1;
        if secret.len() >= MIN_SCRUB_LEN
            && self.seen.len() < MAX_SEEN
            && !self.seen.iter().any(|(s, _)| s == secret)
        {
            self.seen.push((secret.to_string(), placeholder.clone()));
        }
        placeholder
    }

    /// The redacted value of header `name`, or `None` when it is not a secret. Credentials
    /// keep their scheme (`Bearer <placeholder>`), cookies their names, `Set-Cookie` its
    /// name and attributes.
    pub fn header_value(&mut self, name: &str, value: &[u8]) -> Option<Vec<u8>> {
        if !self.rules.is_secret_header(name) {
            return None;
        }
        let text = String::from_utf8_lossy(value).into_owned();
        let lower = name.to_ascii_lowercase();
        let out = if lower.ends_with("authorization") {
            match text.trim().split_once(' ') {
                Some((scheme, creds)) => format!("{scheme} {}", self.value(creds.trim())),
                None => self.value(text.trim()),
            }
        } else if lower == "cookie" {
            text.split(';')
                .map(|pair| self.cookie_pair(pair))
                .collect::<Vec<_>>()
                .join(";")
        } else if lower == "set-cookie" {
            match text.split_once(';') {
                Some((pair, attrs)) => format!("{};{attrs}", self.cookie_pair(pair)),
                None => self.cookie_pair(&text),
            }
        } else {
            self.value(text.trim())
        };
        (out.as_bytes() != value).then(|| out.into_bytes())
    }

    /// `name=value` with the value redacted (leading spaces kept).
    fn cookie_pair(&mut self, pair: &str) -> String {
        match pair.split_once('=') {
            Some((n, v)) => {
                let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
                let inner = if quoted { &v[1..v.len() - 1] } else { v };
                let p = self.value(inner.trim());
                if quoted {
                    format!("{n}=\"{p}\"")
                } else {
                    format!("{n}={p}")
                }
            }
            None => pair.to_string(),
        }
    }

    /// A query string (or a form-urlencoded body) with secret parameters redacted; `None`
    /// when nothing changed. Values are hashed decoded, so a secret gets the same placeholder
    /// here as in a header or JSON.
    pub fn query(&mut self, query: &str) -> Option<String> {
        // Most queries hold no secret: look first, without allocating (a `String` per pair
        // was most of this function's cost on a capture of API traffic).
        let rules = self.rules;
        let secret = |pair: &str| match pair.split_once('=') {
            Some((k, v)) => !v.is_empty() && rules.is_secret_param(&decode_name(k)),
            None => false,
        };
        if !query.split('&').any(secret) {
            return None;
        }
        let mut changed = false;
        let out: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if !v.is_empty() && self.rules.is_secret_param(&decode(k)) => {
                    let p = self.value(&decode(v));
                    changed |= p != v;
                    format!("{k}={p}")
                }
                _ => pair.to_string(),
            })
            .collect();
        changed.then(|| out.join("&"))
    }

    /// A JSON document with secret fields (and the user's paths) redacted at any depth;
    /// `None` when nothing changed or it is not JSON. The text is edited in place where it
    /// can be (string values), so the rest of the document keeps its formatting.
    pub fn json(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let mut doc: Value = serde_json::from_slice(data).ok()?;
        let mut strings = Vec::new();
        let mut others = false;
        let mut path = Vec::new();
        self.walk(&mut doc, &mut path, false, &mut strings, &mut others);
        if strings.is_empty() && !others {
            return None;
        }
        if !others {
            // Each secret's JSON literal, replaced in the text; any literal not found as
            // written (other escapes) falls back to writing the document anew.
            let mut text = data.to_vec();
            let mut all_found = true;
            for (secret, placeholder) in &strings {
                let Ok(literal) = serde_json::to_string(secret) else {
                    all_found = false;
                    break;
                };
                let replaced = replace_all(
                    &text,
                    literal.as_bytes(),
                    format!("\"{placeholder}\"").as_bytes(),
                );
                match replaced {
                    Some(t) => text = t,
                    None => all_found = false,
                }
            }
            // A secret equal to an object key or to another value would have been replaced
            // there too: keep the edited text only when it is the redacted document.
            if all_found && serde_json::from_slice::<Value>(&text).is_ok_and(|t| t == doc) {
                return Some(text);
            }
        }
        serde_json::to_vec(&doc).ok()
    }

    /// Replaces secret leaves of `v`; `inherited` when an enclosing field is a secret (its
    /// whole content is). String secrets go to `strings`, others set `others`.
    fn walk(
        &mut self,
        v: &mut Value,
        path: &mut Vec<String>,
        inherited: bool,
        strings: &mut Vec<(String, String)>,
        others: &mut bool,
    ) {
        match v {
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    path.push(k.clone());
                    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                    let secret = inherited
                        || self.rules.is_secret_field(k)
                        || self.rules.is_secret_path(&refs);
                    self.walk(item, path, secret, strings, others);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, path, inherited, strings, others);
                }
            }
            Value::Null => {}
            Value::String(s) if inherited && !s.is_empty() && !is_placeholder(s) => {
                let p = self.value(s);
                strings.push((std::mem::take(s), p.clone()));
                *s = p;
            }
            Value::String(_) => {}
            leaf if inherited => {
                let text = leaf.to_string();
                *leaf = Value::String(self.value(&text));
                *others = true;
            }
            _ => {}
        }
    }

    /// A multipart/form-data body with the contents of secret-named parts redacted; `None`
    /// when nothing changed.
    ///
    /// Written by hand: the multipart crates parse a body as an async stream of parts and
    /// cannot give back the same bytes with one part's content changed.
    pub fn multipart(&mut self, data: &[u8], boundary: &str) -> Option<Vec<u8>> {
        let delimiter = format!("--{boundary}").into_bytes();
        let starts: Vec<usize> = memchr::memmem::find_iter(data, &delimiter).collect();
        let mut out = Vec::with_capacity(data.len());
        let mut copied = 0;
        for pair in starts.windows(2) {
            let part_start = pair[0] + delimiter.len();
            // The CRLF before the next delimiter belongs to the delimiter (RFC 2046 §5.1.1).
            let part_end = if data[..pair[1]].ends_with(b"\r\n") {
                pair[1] - 2
            } else {
                pair[1]
            };
            let Some(head_len) = memchr::memmem::find(&data[part_start..part_end], b"\r\n\r\n")
            else {
                continue;
            };
            let head = String::from_utf8_lossy(&data[part_start..part_start + head_len]);
            let Some(name) = part_name(&head) else {
                continue;
            };
            if !self.rules.is_secret_field(&name) {
                continue;
            }
            let content_start = part_start + head_len + 4;
            if content_start >= part_end {
                continue;
            }
            let content = String::from_utf8_lossy(&data[content_start..part_end]).into_owned();
            let p = self.value(&content);
            out.extend_from_slice(&data[copied..content_start]);
            out.extend_from_slice(p.as_bytes());
            copied = part_end;
        }
        if copied == 0 {
            return None;
        }
        out.extend_from_slice(&data[copied..]);
        Some(out)
    }

    /// The body redacted as its `content_type` says (JSON, form-urlencoded, multipart; a body
    /// that looks like JSON is tried as JSON); `None` when nothing changed.
    pub fn body(&mut self, content_type: &str, data: &[u8]) -> Option<Vec<u8>> {
        if data.is_empty() {
            return None;
        }
        // Compared without case rather than lower-cased: a copy per body showed in the
        // proxy's allocation profile.
        let media = content_type.split(';').next().unwrap_or("").trim();
        let is = |m: &str| media.eq_ignore_ascii_case(m);
        let json_media = media
            .as_bytes()
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"json"));
        let looks_json = matches!(
            data.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'{') | Some(b'[')
        );
        let structured = is("application/x-www-form-urlencoded")
            || is("multipart/form-data")
            || json_media
            || looks_json;
        // Only structured bodies have fields to redact: others are not even scanned.
        if !structured || !self.rules.may_hold_secret_field(data) {
            return None;
        }
        if is("application/x-www-form-urlencoded") {
            let text = std::str::from_utf8(data).ok()?;
            return self.query(text).map(String::into_bytes);
        }
        if is("multipart/form-data") {
            let boundary = content_type.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                k.eq_ignore_ascii_case("boundary")
                    .then(|| v.trim().trim_matches('"').to_string())
            })?;
            return self.multipart(data, &boundary);
        }
        if json_media || looks_json {
            return self.json(data);
        }
        None
    }

    /// `data` with every secret this pass replaced so far, wherever it occurs, replaced by
    /// its placeholder (a secret echoed in a body, a token repeated in a URL); `None` when
    /// none occurs.
    pub fn scrub(&self, data: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        // Longest first, so that a secret that is a prefix of another does not cut it.
        let mut seen: Vec<&(String, String)> = self.seen.iter().collect();
        seen.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        for (secret, placeholder) in seen {
            let current = out.as_deref().unwrap_or(data);
            if let Some(t) = replace_all(current, secret.as_bytes(), placeholder.as_bytes()) {
                out = Some(t);
            }
        }
        out
    }
}

/// The `name` of a multipart part's Content-Disposition.
fn part_name(head: &str) -> Option<String> {
    let line = head.lines().find(|l| {
        l.split(':')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    line.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Percent-decoded form/query component (`+` is a space).
/// A parameter's name decoded, borrowed when there is nothing to decode.
fn decode_name(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b == b'%' || b == b'+') {
        std::borrow::Cow::Owned(decode(s))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// `data` with every `from` replaced by `to`; `None` when `from` does not occur.
fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut last = 0;
    for i in memchr::memmem::find_iter(data, from) {
        if i < last {
            continue;
        }
        out.extend_from_slice(&data[last..i]);
        out.extend_from_slice(to);
        last = i + from.len();
    }
    if last == 0 {
        return None;
    }
    out.extend_from_slice(&data[last..]);
    Some(out)
}
