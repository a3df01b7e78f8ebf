//! What the HAR and mitmproxy readers share: the error that says where a file is broken,
//! and the conversions of the URLs and times both formats write.

/// Why a foreign file cannot be imported, with where.
#[derive(Debug, thiserror::Error)]
pub enum ForeignError {
    #[error("invalid HAR at line {line}, column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid HAR entry {index} (entries[{index}]): {message}")]
    HarEntry { index: usize, message: String },
    #[error("invalid mitmproxy flow file {0}")]
    Tnetstring(#[from] super::tnetstring::TnetError),
    #[error("invalid mitmproxy flow at byte {offset}: {message}")]
    Flow { offset: usize, message: String },
}

/// A URL split as an [`Exchange`] keeps it: scheme (`ws`/`wss` become `http`/`https`, the
/// WebSocket being the protocol), authority, and target in origin form without fragment.
pub(super) fn split_url(url: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("URL {url:?} has no scheme"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => return Err(format!("URL {url:?}: scheme {other:?} is not HTTP")),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.is_empty() {
        return Err(format!("URL {url:?} has no host"));
    }
    let target = target.split('#').next().unwrap_or_default();
    let target = if target.is_empty() {
        "/".to_string()
    } else if target.starts_with('?') {
        format!("/{target}")
    } else {
        target.to_string()
    };
    Ok((scheme.to_string(), authority.to_string(), target))
}

/// Seconds since the epoch (a float, as both formats write times) in nanoseconds.
pub(super) fn secs_to_ns(secs: f64) -> i64 {
    // Whole seconds and the fraction apart: `secs * 1e9` at today's epoch is past f64's
    // exact range and lands hundreds of nanoseconds off.
    let whole = secs.trunc();
    (whole as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(((secs - whole) * 1e9).round() as i64)
}
