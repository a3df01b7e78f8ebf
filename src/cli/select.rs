//! The exchange-selection flags shared by `ls`, `export` and `stats`: parsed here into the
//! store's one [`Selection`], which the reader turns into SQL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use crate::store::{Selection, StatusRange};

/// Which exchanges a command works on; every flag given must hold.
#[derive(Clone, Debug, Default, Args)]
#[command(next_help_heading = "Selecting exchanges")]
pub(crate) struct SelectArgs {
    /// Only paths matching this glob (`*` any characters, `/` included; `?` one), without the
    /// query string (repeatable: either).
    #[arg(long = "path", value_name = "GLOB")]
    pub(crate) paths: Vec<String>,

    /// Only this request method (repeatable or comma-separated).
    #[arg(long = "method", value_name = "METHOD", value_delimiter = ',')]
    pub(crate) methods: Vec<String>,

    /// Only these statuses: `404`, `5xx`, `200-299` (repeatable or comma-separated).
    #[arg(long = "status", value_name = "STATUS", value_delimiter = ',')]
    pub(crate) statuses: Vec<StatusRange>,

    /// Only this protocol: http/1.1, http/1.0, h2, grpc, websocket (repeatable).
    #[arg(long = "protocol", value_name = "NAME", value_delimiter = ',')]
    pub(crate) protocols: Vec<String>,

    /// Only requests to this host, with or without `:port` (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    pub(crate) hosts: Vec<String>,

    /// Only exchanges started at or after this: a duration ago (`10m`, `2h`, `7d`) or an
    /// RFC 3339 time (`2026-12-01T10:00:00Z`).
    #[arg(long, value_name = "WHEN", value_parser = parse_instant)]
    pub(crate) since: Option<i64>,

    /// Only exchanges started before this (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = parse_instant)]
    pub(crate) until: Option<i64>,

    /// Only exchanges of this W3C trace id (from `traceparent`).
    #[arg(long = "trace-id", value_name = "ID")]
    pub(crate) trace_id: Option<String>,

    /// Only exchanges that took longer than this (`500ms`, `2s`), first request byte to last
    /// response byte.
    #[arg(long = "slower-than", value_name = "DURATION", value_parser = super::util::parse_duration)]
    pub(crate) slower_than: Option<Duration>,

    /// Only failures: no response, a 5xx, or a gRPC status other than OK.
    #[arg(long)]
    pub(crate) errors: bool,
}

impl SelectArgs {
    /// The store's selection for these flags.
    pub(crate) fn selection(&self) -> Selection {
        Selection {
            methods: self.methods.clone(),
            statuses: self.statuses.clone(),
            protocols: self.protocols.clone(),
            hosts: self.hosts.clone(),
            paths: self.paths.clone(),
            since_ns: self.since,
            until_ns: self.until,
            trace_id: self.trace_id.clone(),
            slower_than_ns: self
                .slower_than
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            errors: self.errors,
            ..Selection::default()
        }
    }
}

/// `10m` (that long before now) or an RFC 3339 time, as ns since the Unix epoch.
pub(crate) fn parse_instant(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(at) = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(at.unix_timestamp_nanos())
            .map_err(|_| format!("{s:?} is out of range"));
    }
    let ago = humantime::parse_duration(t).map_err(|_| {
        format!("{s:?} is neither a duration ago (10m, 2h, 7d) nor an RFC 3339 time")
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = now.saturating_sub(ago);
    i64::try_from(at.as_nanos()).map_err(|_| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_relative_or_absolute() {
        assert_eq!(
            parse_instant("2026-12-01T10:00:00Z"),
            Ok(1_796_119_200_000_000_000)
        );
        assert_eq!(
            parse_instant("2026-12-01T11:00:00+01:00"),
            Ok(1_796_119_200_000_000_000)
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let ten_min = parse_instant("10m").unwrap_or(0);
        assert!((now - ten_min - 600_000_000_000).abs() < 5_000_000_000);
        assert!(parse_instant("yesterday-ish").is_err());
    }
}
