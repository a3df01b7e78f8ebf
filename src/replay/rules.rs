//! Rules: "this latency or this fault for these requests, with this probability or on these
//! calls", read from the `--config` file (YAML) or set through the admin API.
//!
//! ```yaml
//! seed: 7
//! latency: fixed:20ms
//! mode: healthy
//! presets:
//!   flaky: {mode: error, error_rate: 0.5, error_status: [503]}
//! rules:
//!   - name: third-payment-fails
//!     match: {method: POST, path: /pay}
//!     nth: 3
//!     fault: {status: {code: 503}}
//!   - match: {path: "/users/{id}", header: {x-tenant: beta}}
//!     probability: 0.2
//!     latency: uniform:100ms..300ms
//! ```

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::faults::Fault;
use super::latency::LatencyMode;
use super::scenario::{Mode, Scenario};
use crate::model::Protocol;

/// The `--config` file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    pub seed: Option<u64>,
    pub latency: Option<LatencyMode>,
    #[serde(
        with = "super::latency::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub jitter: Option<std::time::Duration>,
    pub bandwidth: Option<u64>,
    pub mode: Option<Mode>,
    /// A preset (built-in or from `presets`) to start with.
    pub preset: Option<String>,
    /// User presets, by name.
    pub presets: BTreeMap<String, Scenario>,
    pub rules: Vec<Rule>,
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("rule {index}: {message}")]
    Rule { index: usize, message: String },
}

impl ConfigFile {
    /// Parses and checks a config file's text.
    ///
    /// # Errors
    /// Syntax errors, unknown keys, and rules that could never fire.
    pub fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        let c: ConfigFile = if text.trim().is_empty() {
            ConfigFile::default()
        } else {
            from_yaml(text)?
        };
        check_rules(&c.rules)?;
        Ok(c)
    }
}

/// Parses YAML (or JSON, a subset) with enums written as one-key maps (`{status: {code:
/// 503}}`), the way JSON writes them, rather than YAML's `!status` tags.
///
/// # Errors
/// Syntax errors and values that do not fit `T`.
pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_norway::Error> {
    serde_norway::with::singleton_map_recursive::deserialize(serde_norway::Deserializer::from_str(
        text,
    ))
}

/// Checks rules for values that cannot mean anything.
///
/// # Errors
/// The first bad rule, by position.
pub fn check_rules(rules: &[Rule]) -> Result<(), ConfigError> {
    for (index, r) in rules.iter().enumerate() {
        let bad = |message: &str| {
            Err(ConfigError::Rule {
                index: index + 1,
                message: message.to_string(),
            })
        };
        if r.fault.is_none() && r.latency.is_none() {
            return bad("has neither fault nor latency");
        }
        if r.nth == Some(0) || r.every == Some(0) {
            return bad("nth and every count from 1");
        }
        if r.probability.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
            return bad("probability must be between 0 and 1");
        }
    }
    Ok(())
}

/// Which requests a rule applies to. Every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Match {
    /// `http` (any HTTP/1.x or HTTP/2 request that is not gRPC), `http/1.1`, `h2`, `grpc`
    /// or `websocket`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// A glob (`*` within a segment, `**` across segments) or a template (`/users/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// gRPC `package.Service/Method`; `package.Service/*` for a whole service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    /// Header name (any case) to exact value, or `*` for "present".
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, String>,
}

/// One rule: what to match, when to fire, what to do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matches: Match,
    /// Fire on exactly the nth matching call (from 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nth: Option<u64>,
    /// Fire on every nth matching call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    /// Fire on the first n matching calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    /// Fire on every matching call after the first n.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Fire with this probability (drawn from the seeded generator).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
}

/// What the rule engine looks at in a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    pub protocol: Protocol,
    pub method: &'a str,
    /// The path without query.
    pub path: &'a str,
    /// gRPC `package.Service/Method`, for gRPC calls.
    pub grpc_method: Option<&'a str>,
    pub headers: &'a [crate::model::Header],
}

impl Rule {
    /// True when `req` is one of the requests this rule is about (before its trigger).
    pub fn applies_to(&self, req: &RequestInfo<'_>) -> bool {
        let m = &self.matches;
        if let Some(p) = &m.protocol {
            let ok = match p.to_ascii_lowercase().as_str() {
                "http" => !matches!(req.protocol, Protocol::Grpc | Protocol::WebSocket),
                other => Protocol::parse(other) == Some(req.protocol),
            };
            if !ok {
                return false;
            }
        }
        if m.method
            .as_deref()
            .is_some_and(|want| !want.eq_ignore_ascii_case(req.method))
        {
            return false;
        }
        if m.path
            .as_deref()
            .is_some_and(|pat| !path_matches(pat, req.path))
        {
            return false;
        }
        if let Some(want) = &m.grpc {
            match req.grpc_method {
                Some(got)
                    if path_matches(want.trim_start_matches('/'), got.trim_start_matches('/')) => {}
                _ => return false,
            }
        }
        m.header.iter().all(|(name, want)| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .is_some_and(|h| want == "*" || h.value[..] == *want.as_bytes())
        })
    }

    /// Decides whether the rule fires on its `call`th matching call (from 1). The RNG is
    /// drawn from only when the rule has a probability, so rules without one never shift
    /// the sequence of random choices.
    pub fn fires(&self, call: u64, rng: &mut impl Rng) -> bool {
        if self.nth.is_some_and(|n| call != n)
            || self.every.is_some_and(|n| !call.is_multiple_of(n))
            || self.first.is_some_and(|n| call > n)
            || self.after.is_some_and(|n| call <= n)
        {
            return false;
        }
        match self.probability {
            Some(p) => rng.random::<f64>() < p,
            None => true,
        }
    }
}

/// Matches a path against a glob or a template: `{name}` and `*` match one segment, `**`
/// any number of them. Allocation-free: it runs for every rule on every request.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    glob(Some(pattern), Some(path))
}

/// The first `/`-separated segment and the rest (`None` after the last segment).
fn split_segment(s: &str) -> (&str, Option<&str>) {
    match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

fn glob(pattern: Option<&str>, text: Option<&str>) -> bool {
    let Some(pattern) = pattern else {
        return text.is_none();
    };
    let (seg, rest) = split_segment(pattern);
    if seg == "**" {
        let mut text = text;
        loop {
            if glob(rest, text) {
                return true;
            }
            match text {
                Some(t) => text = split_segment(t).1,
                None => return false,
            }
        }
    }
    match text {
        Some(t) => {
            let (tseg, trest) = split_segment(t);
            segment_matches(seg, tseg) && glob(rest, trest)
        }
        None => false,
    }
}

/// One segment: `{name}` matches any non-empty segment, `*` any run of characters.
fn segment_matches(pat: &str, text: &str) -> bool {
    if pat.starts_with('{') && pat.ends_with('}') {
        return !text.is_empty();
    }
    let stars = pat.bytes().filter(|&b| b == b'*').count();
    if stars == 0 {
        return pat == text;
    }
    let first = pat.split('*').next().unwrap_or("");
    let last = pat.rsplit('*').next().unwrap_or("");
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in pat.split('*').skip(1).take(stars - 1) {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::model::Header;
    use crate::vocab::route_template;

    fn req<'a>(method: &'a str, path: &'a str, headers: &'a [Header]) -> RequestInfo<'a> {
        RequestInfo {
            protocol: Protocol::Http11,
            method,
            path,
            grpc_method: None,
            headers,
        }
    }

    #[test]
    fn globs_and_templates() {
        assert!(path_matches("/users/{id}", "/users/42"));
        assert!(!path_matches("/users/{id}", "/users/42/orders"));
        assert!(!path_matches("/users/{id}", "/users/"));
        assert!(path_matches("/users/*", "/users/42"));
        assert!(path_matches("/api/**", "/api/v1/users/42"));
        assert!(path_matches("/api/**/orders", "/api/v1/users/42/orders"));
        assert!(path_matches("/files/*.json", "/files/a.json"));
        assert!(!path_matches("/files/*.json", "/files/a.xml"));
        assert!(path_matches("/pay", "/pay"));
        assert!(!path_matches("/pay", "/payment"));
        assert!(path_matches("/a/*b*c*/d", "/a/xbyyc/d"));
        assert!(!path_matches("/a/*b*c*/d", "/a/xcyb/d"));
        assert!(path_matches("/**", "/"));
        assert!(!path_matches("/x/**/y", "/x/z"));
    }

    #[test]
    fn templates_are_guessed_from_ids() {
        assert_eq!(
            route_template("/users/42/orders/7"),
            "/users/{id}/orders/{id}"
        );
        assert_eq!(
            route_template("/o/123e4567-e89b-12d3-a456-426614174000"),
            "/o/{id}"
        );
        assert_eq!(route_template("/json?a=1"), "/json");
        assert_eq!(route_template("/v1/users"), "/v1/users");
        assert_eq!(route_template(""), "/");
    }

    #[test]
    fn match_on_method_header_protocol_and_grpc() {
        let hs = [Header::new("X-Tenant", "beta")];
        let rule: Rule = from_yaml(
            "match: {method: post, path: /pay, header: {x-tenant: beta}}\nfault: reset\n",
        )
        .unwrap();
        assert!(rule.applies_to(&req("POST", "/pay", &hs)));
        assert!(!rule.applies_to(&req("GET", "/pay", &hs)));
        assert!(!rule.applies_to(&req("POST", "/pay", &[])));
        let grpc: Rule =
            from_yaml("match: {protocol: grpc, grpc: shop.Cart/*}\nfault: grpc_abort\n").unwrap();
        let call = RequestInfo {
            protocol: Protocol::Grpc,
            method: "POST",
            path: "/shop.Cart/Add",
            grpc_method: Some("shop.Cart/Add"),
            headers: &[],
        };
        assert!(grpc.applies_to(&call));
        assert!(!grpc.applies_to(&req("POST", "/shop.Cart/Add", &[])));
        let http: Rule = from_yaml("match: {protocol: http}\nfault: hang\n").unwrap();
        assert!(http.applies_to(&req("GET", "/", &[])));
        assert!(!http.applies_to(&call));
    }

    #[test]
    fn deterministic_triggers_are_exact() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let fired = |r: &Rule, rng: &mut ChaCha8Rng| {
            (1..=12).filter(|&c| r.fires(c, rng)).collect::<Vec<_>>()
        };
        let r = |y: &str| from_yaml::<Rule>(&format!("{y}\nfault: reset\n")).unwrap();
        assert_eq!(fired(&r("nth: 3"), &mut rng), vec![3]);
        assert_eq!(fired(&r("every: 5"), &mut rng), vec![5, 10]);
        assert_eq!(fired(&r("first: 2"), &mut rng), vec![1, 2]);
        assert_eq!(fired(&r("after: 10"), &mut rng), vec![11, 12]);
        assert_eq!(fired(&r("after: 2\nevery: 3"), &mut rng), vec![3, 6, 9, 12]);
    }

    #[test]
    fn config_files_are_checked() {
        let c = ConfigFile::parse(
            "seed: 7\nlatency: fixed:20ms\npresets:\n  flaky: {mode: error, error_rate: 0.5}\nrules:\n  - {match: {path: /pay}, nth: 3, fault: {status: {code: 503}}}\n",
        )
        .unwrap();
        assert_eq!(c.seed, Some(7));
        assert_eq!(c.rules[0].nth, Some(3));
        assert_eq!(c.presets["flaky"].error_rate, 0.5);
        let err = ConfigFile::parse("rules:\n  - {match: {path: /pay}}\n").unwrap_err();
        assert_eq!(err.to_string(), "rule 1: has neither fault nor latency");
        assert!(ConfigFile::parse("rulez: []\n").is_err());
        assert!(ConfigFile::parse("rules:\n  - {nth: 0, fault: reset}\n").is_err());
        assert!(ConfigFile::parse("").unwrap().rules.is_empty());
    }
}
