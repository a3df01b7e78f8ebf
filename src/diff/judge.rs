//! Compares a recorded exchange with an observed one: status, headers and trailers here, the
//! body in `body`, gRPC messages and WebSocket frames in `stream`.

use std::collections::BTreeMap;

use super::{body, stream, Difference, Ignored, Rules, Verdict};
use crate::model::{Exchange, Header, Protocol, Response};
use crate::vocab;
use crate::vocab::secrets;

/// What a side shows for a value it does not have.
pub(super) const ABSENT: &str = "(absent)";

/// Differences kept per exchange; more are counted in one last entry.
const MAX_DIFFERENCES: usize = 50;
/// Ignored values listed per exchange; more are counted in one last entry.
const MAX_IGNORED: usize = 50;
/// Longest value shown in a difference.
const MAX_SHOWN: usize = 160;

/// Headers that describe the connection or the framing, not the answer.
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "alt-svc",
];

/// Compares exchanges under a set of [`Rules`].
#[derive(Debug)]
pub(crate) struct Judge {
    rules: Rules,
}

impl Judge {
    /// A judge applying `rules`.
    pub(crate) fn new(rules: Rules) -> Judge {
        Judge { rules }
    }

    /// Status, headers, body (JSON by value with paths, text by line, binary by hash),
    /// gRPC messages + trailers, WebSocket frames in order.
    pub(crate) fn compare(&self, recorded: &Exchange, observed: &Exchange) -> Verdict {
        raw_compare(&self.rules, recorded, observed)
    }
}

/// The endpoint an exchange belongs to, as reports and rules name it: `GET /users/{id}`.
pub(super) fn endpoint_of(ex: &Exchange) -> String {
    let path = if ex.protocol() == Protocol::Grpc {
        ex.request.path().to_string()
    } else {
        vocab::route_template(ex.request.path())
    };
    format!("{} {}", ex.request.method, path)
}

/// The comparison itself, under any rules (noise learning compares under bare ones).
pub(super) fn raw_compare(rules: &Rules, recorded: &Exchange, observed: &Exchange) -> Verdict {
    let mut scope = Scope {
        rules,
        endpoint: endpoint_of(recorded),
        times: (recorded.started_at_ns, observed.started_at_ns),
        verdict: Verdict::default(),
        more_differences: 0,
        more_ignored: 0,
    };
    match (&recorded.response, &observed.response) {
        (Some(_), Some(_)) => compare_responses(&mut scope, recorded, observed),
        (None, None) => {}
        (a, b) => {
            let show = |r: Option<&Response>, ex: &Exchange| match r {
                Some(r) => r.status.to_string(),
                None => match &ex.error {
                    Some(e) => format!("(no answer: {e})"),
                    None => "(no answer)".into(),
                },
            };
            let (ra, rb) = (show(a.as_ref(), recorded), show(b.as_ref(), observed));
            scope.differ("status".into(), &ra, &rb, ra.clone(), rb.clone());
        }
    }
    scope.finish()
}

fn compare_responses(scope: &mut Scope<'_>, recorded: &Exchange, observed: &Exchange) {
    let (Some(a), Some(b)) = (&recorded.response, &observed.response) else {
        return;
    };
    if a.status != b.status {
        let (ra, rb) = (a.status.to_string(), b.status.to_string());
        scope.differ("status".into(), &ra, &rb, ra.clone(), rb.clone());
    }
    let grpc = recorded.protocol() == Protocol::Grpc;
    compare_headers(scope, "header", &a.headers, &b.headers, grpc);
    compare_headers(scope, "trailer", &a.trailers, &b.trailers, grpc);
    let body_equal = body::compare(scope, a, b);
    let (la, lb) = (
        vocab_header(&a.headers, "content-length"),
        vocab_header(&b.headers, "content-length"),
    );
    if la != lb {
        // The length follows the body: equal bodies make it noise, and differing ones are
        // already reported where they differ.
        let rule = if body_equal {
            "content-length: the body compares equal"
        } else {
            "content-length: follows the body's differences"
        };
        scope.ignore("header content-length".into(), rule.into());
    }
    if grpc {
        for name in ["grpc-status", "grpc-message"] {
            let value = |r: &Response| {
                vocab_header(&r.trailers, name).or_else(|| vocab_header(&r.headers, name))
            };
            let (va, vb) = (value(a), value(b));
            // A missing grpc-status is status 0 only when the call ended; keep it explicit.
            if va != vb {
                let (ra, rb) = (
                    va.unwrap_or_else(|| ABSENT.into()),
                    vb.unwrap_or_else(|| ABSENT.into()),
                );
                scope.differ(
                    format!("grpc trailer {name}"),
                    &ra,
                    &rb,
                    ra.clone(),
                    rb.clone(),
                );
            }
        }
    }
    stream::compare(scope, recorded, observed);
}

fn vocab_header(headers: &[Header], name: &str) -> Option<String> {
    use crate::model::HeaderList;
    headers.header_str(name)
}

/// Header values by lowercase name, in order, skipping framing and pseudo-headers.
fn header_values(headers: &[Header], grpc: bool) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in headers {
        let name = h.name.to_ascii_lowercase();
        if name.starts_with(':')
            || FRAMING_HEADERS.contains(&name.as_str())
            || (grpc && matches!(name.as_str(), "grpc-status" | "grpc-message"))
        {
            continue;
        }
        out.entry(name)
            .or_default()
            .push(h.value_str().trim().to_string());
    }
    out
}

/// The cookie names a `Set-Cookie` list sets (the values are session state: volatile).
fn cookie_names(values: &[String]) -> Vec<String> {
    let mut names: Vec<String> = values
        .iter()
        .map(|v| v.split(['=', ';']).next().unwrap_or("").trim().to_string())
        .collect();
    names.sort();
    names
}

fn compare_headers(scope: &mut Scope<'_>, what: &str, a: &[Header], b: &[Header], grpc: bool) {
    let (ma, mb) = (header_values(a, grpc), header_values(b, grpc));
    let names: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for name in names {
        let (va, vb) = (ma.get(name), mb.get(name));
        if va == vb {
            continue;
        }
        let path = format!("{what} {name}");
        if scope.rules.volatile_header(name) {
            scope.ignore(path, format!("volatile header {name}"));
            continue;
        }
        if name == "set-cookie" {
            let (ca, cb) = (
                cookie_names(va.map_or(&[][..], |v| v)),
                cookie_names(vb.map_or(&[][..], |v| v)),
            );
            if ca == cb {
                scope.ignore(
                    path,
                    "volatile header set-cookie: the same cookies, new values".into(),
                );
                continue;
            }
            let (ra, rb) = (ca.join(", "), cb.join(", "));
            scope.differ(format!("{path} names"), &ra, &rb, ra.clone(), rb.clone());
            continue;
        }
        let join = |v: Option<&Vec<String>>| v.map_or_else(|| ABSENT.to_string(), |v| v.join(", "));
        let (ra, rb) = (join(va), join(vb));
        scope.differ(path, &ra, &rb, ra.clone(), rb.clone());
    }
}

/// Where one comparison collects its findings.
pub(super) struct Scope<'a> {
    pub(super) rules: &'a Rules,
    endpoint: String,
    times: (i64, i64),
    verdict: Verdict,
    more_differences: usize,
    more_ignored: usize,
}

impl Scope<'_> {
    /// Values at `path` differ: noise if a rule says so, a difference otherwise. `ra`/`rb`
    /// are the values as the rules see them (strings unquoted), `shown_*` as the report
    /// shows them.
    pub(super) fn differ(
        &mut self,
        path: String,
        ra: &str,
        rb: &str,
        shown_a: String,
        shown_b: String,
    ) {
        match self.rules.noise(&self.endpoint, &path, ra, rb, self.times) {
            Some(rule) => self.ignore(path, rule),
            None => {
                if self.verdict.differences.len() >= MAX_DIFFERENCES {
                    self.more_differences += 1;
                    return;
                }
                // A credential's value must not reach the report or the terminal.
                let (recorded, now) = if holds_secret(&path) {
                    (hidden(&shown_a), hidden(&shown_b))
                } else {
                    (shorten(shown_a), shorten(shown_b))
                };
                self.verdict.differences.push(Difference {
                    path,
                    recorded,
                    now,
                });
            }
        }
    }

    /// The rule that makes `ra` → `rb` at `path` noise, without recording anything.
    pub(super) fn rules_noise(&self, path: &str, ra: &str, rb: &str) -> Option<String> {
        self.rules.noise(&self.endpoint, path, ra, rb, self.times)
    }

    /// The value at `path` differs but `rule` says it is noise.
    pub(super) fn ignore(&mut self, path: String, rule: String) {
        if self.verdict.ignored.len() >= MAX_IGNORED {
            self.more_ignored += 1;
            return;
        }
        self.verdict.ignored.push(Ignored { path, rule });
    }

    /// The number of differences so far (the body uses it to tell whether it differed).
    pub(super) fn differences(&self) -> usize {
        self.verdict.differences.len() + self.more_differences
    }

    fn finish(mut self) -> Verdict {
        if self.more_differences > 0 {
            self.verdict.differences.push(Difference {
                path: "…".into(),
                recorded: String::new(),
                now: format!("{} more differences", self.more_differences),
            });
        }
        if self.more_ignored > 0 {
            self.verdict.ignored.push(Ignored {
                path: "…".into(),
                rule: format!("{} more values ignored", self.more_ignored),
            });
        }
        self.verdict
    }
}

/// True when the value at `path` is a credential: a secret header, or a JSON field named
/// like one (`$.auth.access_token`).
fn holds_secret(path: &str) -> bool {
    if let Some(name) = path
        .strip_prefix("header ")
        .or_else(|| path.strip_prefix("trailer "))
    {
        let name = name.trim_end_matches(" names");
        return secrets::secret_header(name);
    }
    let Some((_, json)) = path.split_once('$') else {
        return false;
    };
    let last = json
        .rsplit(['.', '['])
        .find(|k| !k.is_empty() && !k.trim_end_matches(']').bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("");
    let key = last
        .trim_end_matches(']')
        .trim_matches('"')
        .to_ascii_lowercase();
    secrets::secret_field(&key)
}

/// A redacted value: only whether it was there.
fn hidden(shown: &str) -> String {
    if shown == ABSENT {
        ABSENT.into()
    } else {
        secrets::REDACTED.into()
    }
}

/// `s` cut to [`MAX_SHOWN`] characters.
fn shorten(s: String) -> String {
    if s.len() <= MAX_SHOWN {
        return s;
    }
    let mut end = MAX_SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
