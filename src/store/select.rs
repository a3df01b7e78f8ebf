//! Which exchanges a command works on: the one selection type that `ls`, `export` and `stats`
//! (and later replay) share, turned into a `WHERE` clause so SQLite does the filtering and
//! the reader only walks the matching rows.

use rusqlite::types::Value;

use crate::model::Exchange;

/// A range of HTTP status codes, both ends included (`404` is `404..=404`, `5xx` is
/// `500..=599`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

/// Why a selection value was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("{0:?} is not a status (try 404, 5xx or 200-299)")]
    Status(String),
}

impl std::str::FromStr for StatusRange {
    type Err = SelectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || SelectionError::Status(s.to_string());
        let code = |x: &str| {
            x.parse::<u16>()
                .ok()
                .filter(|c| (100..=999).contains(c))
                .ok_or_else(bad)
        };
        if let Some(class) = t.strip_suffix("xx") {
            let digit = class.parse::<u16>().ok().filter(|d| (1..=9).contains(d));
            let d = digit.ok_or_else(bad)?;
            return Ok(StatusRange {
                low: d * 100,
                high: d * 100 + 99,
            });
        }
        if let Some((a, b)) = t.split_once('-') {
            let (low, high) = (code(a)?, code(b)?);
            if low > high {
                return Err(bad());
            }
            return Ok(StatusRange { low, high });
        }
        let c = code(&t)?;
        Ok(StatusRange { low: c, high: c })
    }
}

/// A set of conditions on exchanges; every condition given must hold (an empty list or
/// `None` does not restrict). Lists are alternatives: `methods: [GET, POST]` is either.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Request methods, compared case-insensitively.
    pub methods: Vec<String>,
    /// Status ranges; an exchange without a response matches none.
    pub statuses: Vec<StatusRange>,
    /// Protocol names as stored (`http/1.1`, `h2`, `grpc`, `websocket`).
    pub protocols: Vec<String>,
    /// Hosts the client addressed, with or without `:port`.
    pub hosts: Vec<String>,
    /// Path globs (SQLite `GLOB`: `*` matches any run of characters, `/` included; `?` one
    /// character), matched against the path without the query string.
    pub paths: Vec<String>,
    /// Started at or after this instant (ns since the Unix epoch).
    pub since_ns: Option<i64>,
    /// Started before this instant (ns since the Unix epoch).
    pub until_ns: Option<i64>,
    /// W3C trace id (lowercase hex, as stored).
    pub trace_id: Option<String>,
    /// Took longer than this from first request byte to last response byte.
    pub slower_than_ns: Option<u64>,
    /// Only failures: no response (transport error), a 5xx, or a gRPC status other than 0.
    pub errors: bool,
    /// Only exchanges of this client connection.
    pub connection_id: Option<i64>,
    /// Only exchanges with an id above this: the cursor of a page (ids grow in recording
    /// order, so the primary key finds the page's start without walking the rows before it).
    pub after_id: Option<i64>,
}

impl Selection {
    /// True when nothing is restricted.
    pub fn is_all(&self) -> bool {
        *self == Selection::default()
    }

    /// The `WHERE` condition over `exchanges` (aliased `e`) and its parameters, in order.
    /// `errors` is only narrowed here (gRPC answers stay in for the caller to judge by their
    /// trailers, which SQL cannot read): see [`Selection::needs_grpc_check`].
    pub(crate) fn where_clause(&self) -> (String, Vec<Value>) {
        let mut parts: Vec<String> = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        let any_of = |column: &str, values: &[String], params: &mut Vec<Value>| -> String {
            let marks: Vec<&str> = values.iter().map(|_| "?").collect();
            params.extend(values.iter().map(|v| Value::Text(v.clone())));
            format!("{column} IN ({})", marks.join(", "))
        };
        if !self.methods.is_empty() {
            let upper: Vec<String> = self.methods.iter().map(|m| m.to_uppercase()).collect();
            parts.push(any_of("upper(e.method)", &upper, &mut params));
        }
        if !self.protocols.is_empty() {
            let lower: Vec<String> = self.protocols.iter().map(|p| p.to_lowercase()).collect();
            parts.push(any_of("e.protocol", &lower, &mut params));
        }
        if !self.statuses.is_empty() {
            let alts: Vec<String> = self
                .statuses
                .iter()
                .map(|r| {
                    params.push(Value::Integer(r.low.into()));
                    params.push(Value::Integer(r.high.into()));
                    "e.status BETWEEN ? AND ?".to_string()
                })
                .collect();
            parts.push(format!("({})", alts.join(" OR ")));
        }
        if !self.hosts.is_empty() {
            let alts: Vec<String> = self
                .hosts
                .iter()
                .map(|h| {
                    let h = h.to_lowercase();
                    params.push(Value::Text(h.clone()));
                    params.push(Value::Text(format!("{h}:")));
                    // The authority is `host` or `host:port`; a prefix test, not LIKE, so
                    // that `_` and `%` in a name mean themselves.
                    "(lower(e.authority) = ? OR instr(lower(e.authority), ?) = 1)".to_string()
                })
                .collect();
            parts.push(format!("({})", alts.join(" OR ")));
        }
        if !self.paths.is_empty() {
            let alts: Vec<String> = self
                .paths
                .iter()
                .map(|g| {
                    params.push(Value::Text(g.clone()));
                    "mf_path(e.target) GLOB ?".to_string()
                })
                .collect();
            parts.push(format!("({})", alts.join(" OR ")));
        }
        if let Some(ns) = self.since_ns {
            params.push(Value::Integer(ns));
            parts.push("e.started_at_ns >= ?".into());
        }
        if let Some(ns) = self.until_ns {
            params.push(Value::Integer(ns));
            parts.push("e.started_at_ns < ?".into());
        }
        if let Some(t) = &self.trace_id {
            params.push(Value::Text(t.to_lowercase()));
            parts.push("e.trace_id = ?".into());
        }
        if let Some(ns) = self.slower_than_ns {
            params.push(Value::Integer(i64::try_from(ns).unwrap_or(i64::MAX)));
            parts.push("e.response_end_ns > ?".into());
        }
        if let Some(c) = self.connection_id {
            params.push(Value::Integer(c));
            parts.push("e.connection_id = ?".into());
        }
        if let Some(id) = self.after_id {
            params.push(Value::Integer(id));
            parts.push("e.id > ?".into());
        }
        if self.errors {
            parts.push(
                "(e.error IS NOT NULL OR e.status IS NULL OR e.status >= 500 OR e.protocol = 'grpc')"
                    .into(),
            );
        }
        if parts.is_empty() {
            ("1".into(), params)
        } else {
            (parts.join(" AND "), params)
        }
    }

    /// The selection judged in memory, with the same meaning as the `WHERE` clause, for
    /// exchanges that are not in a recording (a fixtures folder's examples) or that a caller
    /// holds already. A path glob that does not compile selects nothing.
    pub fn in_memory(&self) -> InMemory {
        let globs = self
            .paths
            .iter()
            .map(|g| {
                globset::GlobBuilder::new(g)
                    .literal_separator(false)
                    .build()
                    .ok()
                    .map(|g| g.compile_matcher())
            })
            .collect();
        InMemory {
            selection: self.clone(),
            globs,
        }
    }

    /// Whether a row the `WHERE` clause let through must still be checked for a failed gRPC
    /// status (only under `errors`).
    pub(crate) fn needs_grpc_check(&self) -> bool {
        self.errors
    }

    /// The final judgement on a row the clause let through, given its protocol, HTTP status,
    /// error and `grpc-status`.
    pub(crate) fn keeps(
        &self,
        protocol: &str,
        status: Option<u16>,
        failed: bool,
        grpc_status: Option<&str>,
    ) -> bool {
        if !self.errors || protocol != "grpc" || failed || status.is_none_or(|s| s >= 500) {
            return true;
        }
        grpc_status.is_some_and(|g| g.trim() != "0")
    }
}

/// A [`Selection`] with its path globs compiled: [`InMemory::matches`] judges one exchange.
#[derive(Clone, Debug)]
pub struct InMemory {
    selection: Selection,
    globs: Vec<Option<globset::GlobMatcher>>,
}

impl InMemory {
    /// Whether `ex` is selected.
    pub fn matches(&self, ex: &Exchange) -> bool {
        let sel = &self.selection;
        let status = ex.response.as_ref().map(|r| r.status);
        let any = |list: &[String], value: &str| {
            list.is_empty() || list.iter().any(|x| x.eq_ignore_ascii_case(value))
        };
        let authority = ex.authority.to_lowercase();
        let host_ok = sel.hosts.is_empty()
            || sel.hosts.iter().any(|h| {
                let h = h.to_lowercase();
                authority == h
                    || authority
                        .strip_prefix(h.as_str())
                        .is_some_and(|rest| rest.starts_with(':'))
            });
        let path = ex.request.path();
        let path_ok = self.globs.is_empty()
            || self
                .globs
                .iter()
                .any(|g| g.as_ref().is_some_and(|g| g.is_match(path)));
        let failed = ex.error.is_some();
        let protocol = ex.protocol().as_str();
        let status_ok = sel.statuses.is_empty()
            || status.is_some_and(|s| sel.statuses.iter().any(|r| (r.low..=r.high).contains(&s)));
        let errors_ok = !sel.errors
            || ((failed || status.is_none_or(|s| s >= 500) || protocol == "grpc") && {
                let grpc_status = ex.response.as_ref().and_then(|r| {
                    r.trailers
                        .iter()
                        .chain(&r.headers)
                        .find(|h| h.name.eq_ignore_ascii_case("grpc-status"))
                        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
                });
                sel.keeps(protocol, status, failed, grpc_status.as_deref())
            });
        any(&sel.methods, &ex.request.method)
            && any(&sel.protocols, protocol)
            && status_ok
            && host_ok
            && path_ok
            && sel.since_ns.is_none_or(|t| ex.started_at_ns >= t)
            && sel.until_ns.is_none_or(|t| ex.started_at_ns < t)
            && sel.trace_id.as_deref().is_none_or(|t| {
                ex.trace_id
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(t))
            })
            && sel
                .slower_than_ns
                .is_none_or(|t| ex.timings.response_end_ns.is_some_and(|d| d > t))
            && sel
                .connection_id
                .is_none_or(|c| i64::try_from(ex.connection_id).is_ok_and(|x| x == c))
            && sel.after_id.is_none_or(|id| ex.id > id)
            && errors_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse() {
        let r = |s: &str| s.parse::<StatusRange>().map(|r| (r.low, r.high));
        assert_eq!(r("404"), Ok((404, 404)));
        assert_eq!(r("5xx"), Ok((500, 599)));
        assert_eq!(r("200-299"), Ok((200, 299)));
        assert!(r("299-200").is_err());
        assert!(r("abc").is_err());
        assert!(r("0xx").is_err());
        assert!(r("42").is_err());
    }

    #[test]
    fn empty_selection_is_everything() {
        let (clause, params) = Selection::default().where_clause();
        assert_eq!(clause, "1");
        assert!(params.is_empty());
    }
}
