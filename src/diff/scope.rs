//! Where one comparison collects its findings: differences (credentials hidden, long values
//! cut), values the rules call noise, and how many of each did not fit.

use std::cell::OnceCell;

use super::{Difference, Ignored, Rules, Verdict};
use crate::model::{Exchange, Protocol};
use crate::vocab::{self, secrets};

/// What a side shows for a value it does not have.
pub(super) const ABSENT: &str = "(absent)";

/// Differences kept per exchange; more are counted in one last entry.
const MAX_DIFFERENCES: usize = 50;
/// Ignored values listed per exchange; more are counted in one last entry.
const MAX_IGNORED: usize = 50;
/// Longest value shown in a difference.
const MAX_SHOWN: usize = 160;

/// Where one comparison collects its findings.
pub(super) struct Scope<'a> {
    pub(super) rules: &'a Rules,
    /// The recorded exchange, named by its endpoint only when a rule is asked about a
    /// difference (naming every exchange's was ~1.5% of a `replay --to --speed max` run).
    recorded: &'a Exchange,
    endpoint: OnceCell<String>,
    times: (i64, i64),
    verdict: Verdict,
    more_differences: usize,
    more_ignored: usize,
}

impl<'a> Scope<'a> {
    /// A scope for comparing `recorded` with what was observed; `times`: when the recorded
    /// and the observed exchange started.
    pub(super) fn new(rules: &'a Rules, recorded: &'a Exchange, times: (i64, i64)) -> Scope<'a> {
        Scope {
            rules,
            recorded,
            endpoint: OnceCell::new(),
            times,
            verdict: Verdict::default(),
            more_differences: 0,
            more_ignored: 0,
        }
    }

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
        match self.rules.noise(self.endpoint(), &path, ra, rb, self.times) {
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
        self.rules.noise(self.endpoint(), path, ra, rb, self.times)
    }

    fn endpoint(&self) -> &str {
        self.endpoint.get_or_init(|| endpoint_of(self.recorded))
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

    pub(super) fn finish(mut self) -> Verdict {
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

/// The endpoint an exchange belongs to, as reports and rules name it: `GET /users/{id}`.
pub(super) fn endpoint_of(ex: &Exchange) -> String {
    let path = if ex.protocol() == Protocol::Grpc {
        ex.request.path().to_string()
    } else {
        vocab::route_template(ex.request.path())
    };
    format!("{} {}", ex.request.method, path)
}

/// True when the value at `path` is a credential: a secret header, or a JSON field named
/// like one (`$.auth.access_token`).
fn holds_secret(path: &str) -> bool {
    if let Some(name) = path
        .strip_prefix("header ")
        .or_else(|| path.strip_prefix("trailer "))
    {
        let name = name.trim_end_matches(" names");
        return secrets::default_rules().is_secret_header(name);
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
    secrets::default_rules().is_secret_field(&key)
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
