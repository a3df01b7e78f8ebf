//! The list's query string, both ways: the filter form's fields into the store's one
//! [`Selection`] (the filters of `mf ls`), and back into links that keep them.

use crate::store::{Selection, StatusRange};

/// Rows on one page of the list.
pub(super) const PAGE: usize = 50;

/// A parsed query string: its pairs in order, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// `a=1&b=x%20y` → pairs; `+` is a space, as forms send it.
    pub(super) fn parse(raw: &str) -> Query {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Query { pairs }
    }

    /// The first non-empty value of `key`, trimmed.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .find(|v| !v.is_empty())
    }

    /// The query string again, with `key` set to `value` (or removed when `None`).
    pub(super) fn with(&self, key: &str, value: Option<&str>) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut parts: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, v)| k != key && !v.trim().is_empty())
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        if let Some(v) = value {
            parts.push(format!("{}={}", enc(key), enc(v)));
        }
        parts.join("&")
    }
}

/// What the list shows: the selection, and where the page starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Filter {
    pub(super) selection: Selection,
    /// Values that could not be read, one message each (shown above the list).
    pub(super) problems: Vec<String>,
}

/// Comma-separated values of `key`.
fn list(q: &Query, key: &str) -> Vec<String> {
    q.get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The selection the form's fields describe: `path` (glob), `method`, `status` (`404`, `5xx`,
/// `200-299`), `protocol`, `host`, `since`/`until` (RFC 3339, or a form's local
/// `2026-11-23T10:15`, taken as UTC), `errors`, `slow` (a duration: slower than it), `trace`,
/// `connection`, and `after` (the page's cursor: an exchange id).
pub(super) fn filter(q: &Query) -> Filter {
    let mut problems = Vec::new();
    let mut s = Selection {
        paths: list(q, "path"),
        methods: list(q, "method"),
        protocols: list(q, "protocol"),
        hosts: list(q, "host"),
        trace_id: q.get("trace").map(String::from),
        errors: q.get("errors").is_some_and(|v| v != "0"),
        ..Selection::default()
    };
    for st in list(q, "status") {
        match st.parse::<StatusRange>() {
            Ok(r) => s.statuses.push(r),
            Err(e) => problems.push(e.to_string()),
        }
    }
    for (key, slot) in [("since", &mut s.since_ns), ("until", &mut s.until_ns)] {
        if let Some(v) = q.get(key) {
            match instant(v) {
                Some(ns) => *slot = Some(ns),
                None => problems.push(format!(
                    "{key}: {v:?} is not a time (2026-11-23T10:15:00Z or 2026-11-23T10:15)"
                )),
            }
        }
    }
    if let Some(v) = q.get("slow") {
        match humantime::parse_duration(v) {
            Ok(d) => s.slower_than_ns = Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            Err(_) => problems.push(format!("slow: {v:?} is not a duration (500ms, 2s)")),
        }
    }
    for (key, slot) in [
        ("connection", &mut s.connection_id),
        ("after", &mut s.after_id),
    ] {
        if let Some(v) = q.get(key) {
            match v.parse::<i64>() {
                Ok(n) => *slot = Some(n),
                Err(_) => problems.push(format!("{key}: {v:?} is not a number")),
            }
        }
    }
    Filter {
        selection: s,
        problems,
    }
}

/// An RFC 3339 time, or the `datetime-local` form (`YYYY-MM-DDTHH:MM[:SS]`, no zone) read
/// as UTC, as ns since the Unix epoch.
pub(super) fn instant(v: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(v, &Rfc3339) {
        return i64::try_from(at.unix_timestamp_nanos()).ok();
    }
    let with_seconds = if v.len() == 16 {
        format!("{v}:00Z")
    } else {
        format!("{v}Z")
    };
    let at = time::OffsetDateTime::parse(&with_seconds, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_the_selection_of_mf_ls() {
        let q = Query::parse(
            "path=%2Fusers%2F*&method=get,POST&status=5xx,404&protocol=grpc&host=api.test\
             &since=2026-12-01T10:00&until=2026-12-01T11:00:00Z&errors=on&slow=500ms&after=120\
             &trace=&connection=7",
        );
        let f = filter(&q);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        let s = f.selection;
        assert_eq!(s.paths, ["/users/*"]);
        assert_eq!(s.methods, ["get", "POST"]);
        assert_eq!(
            s.statuses,
            [
                StatusRange {
                    low: 500,
                    high: 599
                },
                StatusRange {
                    low: 404,
                    high: 404
                }
            ]
        );
        assert_eq!(s.protocols, ["grpc"]);
        assert_eq!(s.hosts, ["api.test"]);
        assert_eq!(s.since_ns, Some(1_796_119_200_000_000_000));
        assert_eq!(s.until_ns, Some(1_796_122_800_000_000_000));
        assert!(s.errors);
        assert_eq!(s.slower_than_ns, Some(500_000_000));
        assert_eq!(s.after_id, Some(120));
        assert_eq!(s.connection_id, Some(7));
        // An empty field restricts nothing.
        assert_eq!(s.trace_id, None);
        assert!(filter(&Query::parse("")).selection.is_all());
    }

    #[test]
    fn bad_values_are_reported_not_ignored_silently() {
        let f = filter(&Query::parse(
            "status=abc&since=yesterday&slow=fast&after=x",
        ));
        assert_eq!(f.problems.len(), 4, "{:?}", f.problems);
        assert!(f.selection.is_all());
    }

    #[test]
    fn links_keep_the_filters_and_move_the_cursor() {
        let q = Query::parse("method=GET&after=50&path=%2Fa+b");
        assert_eq!(
            q.with("after", Some("100")),
            "method=GET&path=%2Fa%20b&after=100"
        );
        assert_eq!(q.with("after", None), "method=GET&path=%2Fa%20b");
    }
}
