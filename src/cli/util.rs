//! Small helpers shared by subcommands.

use std::path::Path;

use anyhow::Context;

/// Parses sizes such as `16MiB`, `512k`, `1G`, `1000` (binary multiples).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 16MiB, 512k, 1000)"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses durations such as `30s`, `500ms`, `2m`.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration (try 30s or 500ms): {e}"))
}

/// Human-readable byte count (`1.5 KiB`).
pub(crate) use crate::vocab::human_bytes;

/// Opens a recording for reading with the path in the error. Commands read through the
/// store's trait, never a backend's own type.
pub(crate) fn open_recording(path: &Path) -> anyhow::Result<Box<dyn crate::store::RecordingRead>> {
    crate::store::open_reader(path)
        .with_context(|| format!("opening recording {}", crate::store::display_location(path)))
}

/// The command line as typed, for the recording's metadata; a database URL loses its
/// password (a recording never keeps one).
pub(crate) fn command_line() -> String {
    std::env::args()
        .map(|a| crate::store::redact_argument(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The TLS acceptor for a listener: `--tls-cert/--tls-key`, or `--tls` with a certificate
/// minted from the mf CA (created when missing), or none.
pub(crate) fn listener_tls(
    tls: bool,
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: Option<std::sync::Arc<crate::tls::Ca>>,
    alpn: &[&[u8]],
) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let config = match (cert, key) {
        (Some(cert), Some(key)) => crate::tls::file_server_config(cert, key, alpn)
            .context("loading --tls-cert/--tls-key")?,
        _ if tls => {
            let ca = match ca {
                Some(ca) => ca,
                None => std::sync::Arc::new(
                    crate::tls::Ca::init(&crate::tls::default_ca_dir())
                        .context("loading the mf CA")?
                        .0,
                ),
            };
            crate::tls::minting_server_config(ca, "localhost", alpn)
        }
        _ => return Ok(None),
    };
    Ok(Some(tokio_rustls::TlsAcceptor::from(config)))
}

/// A multi-threaded runtime for the network commands.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Exit code when a recording command lost exchanges (write errors, disk full, a disk that
/// could not keep up): the traffic was served, but the recording is incomplete.
pub(crate) const EXIT_NOT_STORED: u8 = 3;

/// Says what the writer could not store, and the exit code that goes with it: 0 when
/// everything was stored, [`EXIT_NOT_STORED`] otherwise.
pub(crate) fn not_stored_exit(summary: &crate::store::WriterSummary) -> u8 {
    match summary.not_stored_line() {
        Some(line) => {
            eprintln!("mf: error: {line}");
            EXIT_NOT_STORED
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
