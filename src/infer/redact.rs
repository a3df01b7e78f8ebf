//! Redaction of secrets before anything reaches a fixture file: fixtures go into public repos,
//! so a secret in one is a security bug.
//!
//! Three layers: headers and query parameters by name, JSON fields whose name contains a
//! secret-like word, and a final scrub of every written file for the secret values seen, which
//! catches a secret echoed somewhere unexpected.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::vocab::secrets;
pub use crate::vocab::secrets::REDACTED;

/// Cap on remembered secret values (for the final scrub).
const MAX_SECRETS: usize = 10_000;

/// Redaction settings and the tally of what was redacted.
#[derive(Debug, Default)]
pub struct Redactor {
    pub enabled: bool,
    /// Extra names (`--redact`): headers, query parameters and JSON fields, case-insensitive.
    pub extra: Vec<String>,
    /// `header Authorization` → times redacted.
    pub report: BTreeMap<String, u64>,
    /// Whether redactions are tallied in `report` (on for what is written, off for analysis).
    pub counting: bool,
    secrets: BTreeSet<String>,
}

impl Redactor {
    /// A redactor; `extra` names are matched case-insensitively.
    pub fn new(enabled: bool, extra: &[String]) -> Redactor {
        Redactor {
            enabled,
            extra: extra.iter().map(|s| s.to_ascii_lowercase()).collect(),
            counting: true,
            ..Default::default()
        }
    }

    fn note(&mut self, what: String, value: &str) {
        if self.counting {
            *self.report.entry(what).or_insert(0) += 1;
        }
        let v = value.trim();
        // Short values ("1", "on") would scrub innocent text; they are not credentials anyway.
        if v.len() >= 8 && self.secrets.len() < MAX_SECRETS {
            self.secrets.insert(v.to_string());
            // `Bearer abc`: the bare token may show up elsewhere too.
            if let Some((_, rest)) = v.split_once(' ') {
                if rest.len() >= 8 {
                    self.secrets.insert(rest.trim().to_string());
                }
            }
            // Cookie pairs `a=b; c=d`: the values alone.
            for part in v.split(';') {
                if let Some((_, val)) = part.split_once('=') {
                    if val.trim().len() >= 8 {
                        self.secrets.insert(val.trim().to_string());
                    }
                }
            }
        }
    }

    /// True when a header of this name is redacted.
    pub fn is_secret_header(&self, name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        self.enabled && (secrets::secret_header(&n) || self.extra.contains(&n))
    }

    fn is_secret_query(&self, name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        self.enabled && (secrets::secret_query(&n) || self.extra.contains(&n))
    }

    fn is_secret_field(&self, name: &str) -> bool {
        let n = name.to_ascii_lowercase();
        self.enabled && (secrets::secret_field(&n) || self.extra.contains(&n))
    }

    /// Redacts header values in place.
    pub fn headers(&mut self, headers: &mut [(String, String)]) {
        for (name, value) in headers.iter_mut() {
            if self.is_secret_header(name) {
                let old = std::mem::replace(value, REDACTED.to_string());
                self.note(format!("header {name}"), &old);
            }
        }
    }

    /// Remembers the secret header values of an exchange that is not written, so that the
    /// final scrub also catches them.
    pub fn tally_headers<'a>(&mut self, names: impl Iterator<Item = (&'a str, String)>) {
        for (name, value) in names {
            if self.is_secret_header(name) {
                let counting = std::mem::replace(&mut self.counting, false);
                self.note(String::new(), &value);
                self.counting = counting;
            }
        }
    }

    /// Redacts query parameter values of a raw query string.
    pub fn query(&mut self, query: &str) -> String {
        query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if self.is_secret_query(k) => {
                    self.note(format!("query {k}"), v);
                    format!(
                        "{k}={}",
                        percent_encoding::utf8_percent_encode(
                            REDACTED,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    )
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    /// True when `v` has a field redaction would touch (so the common case needs no copy).
    pub fn has_secret_field(&self, v: &Value) -> bool {
        match v {
            Value::Object(map) => map
                .iter()
                .any(|(k, i)| self.is_secret_field(k) || self.has_secret_field(i)),
            Value::Array(items) => items.iter().any(|i| self.has_secret_field(i)),
            _ => false,
        }
    }

    /// Redacts JSON fields named like secrets, at any depth.
    pub fn json(&mut self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    if self.is_secret_field(k)
                        && !matches!(item, Value::Object(_) | Value::Array(_) | Value::Null)
                    {
                        let old = match &*item {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        *item = Value::String(REDACTED.to_string());
                        self.note(format!("json field {k}"), &old);
                    } else {
                        self.json(item);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.json(i)),
            _ => {}
        }
    }

    /// Replaces every remembered secret value in `data` (the last line of defence).
    pub fn scrub(&self, data: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(data) else {
            return data.to_vec();
        };
        if !self.enabled || !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return data.to_vec();
        }
        let mut out = text.to_string();
        // Longest first, so a token is not half-replaced by a secret that is its prefix.
        let mut secrets: Vec<&String> = self.secrets.iter().collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        for s in secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_by_name_and_scrubs_echoes() {
        let mut r = Redactor::new(true, &["X-Tenant".to_string()]);
        let mut h = vec![
            (
                "Authorization".to_string(),
                "Bearer s3cr3t-token".to_string(),
            ),
            ("X-Tenant".into(), "acme-corp".into()),
        ];
        r.headers(&mut h);
        assert_eq!(h[0].1, REDACTED);
        assert_eq!(h[1].1, REDACTED);
        assert_eq!(
            r.query("page=2&api_key=abcdef123"),
            "page=2&api_key=%3Credacted%3E"
        );
        let mut body =
            json!({"user": {"password": "hunter22", "name": "ada"}, "access_token": "tok-123456"});
        r.json(&mut body);
        assert_eq!(body["user"]["password"], REDACTED);
        assert_eq!(body["user"]["name"], "ada");
        assert_eq!(body["access_token"], REDACTED);
        assert_eq!(
            r.scrub(b"echo s3cr3t-token and hunter22"),
            b"echo <redacted> and <redacted>"
        );
        assert_eq!(r.report["header Authorization"], 1);
        let mut off = Redactor::new(false, &[]);
        let mut h = vec![("Cookie".to_string(), "a=b".to_string())];
        off.headers(&mut h);
        assert_eq!(h[0].1, "a=b");
    }
}
