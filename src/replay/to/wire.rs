//! What the driver puts on the wire and reads back, independent of the protocol: the target
//! URL of a recorded request, the headers it is sent with, a connection to the target, the
//! answer as an [`Exchange`], and why a send failed as an [`ErrorKind`].

use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::TargetConfig;
use crate::model::{ErrorKind, Exchange, ExchangeError, Header};
use crate::net::dial::{dial, Dialed};

/// A connection to the target, cleartext or TLS.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub(super) type BoxIo = Pin<Box<dyn Io>>;

/// Beyond the connection-specific fields (`vocab::CONNECTION_SPECIFIC`, which HTTP/2
/// forbids): the framing the client library redoes and the Host it sets. None of these is
/// copied from the recording.
const REDONE: [&str; 3] = ["trailer", "content-length", "host"];

/// True for a recorded header the driver must not copy to the target.
fn not_copied(name: &str) -> bool {
    crate::vocab::CONNECTION_SPECIFIC
        .iter()
        .chain(REDONE.iter())
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// Opens a connection to the target within the timeout; over TLS offering h2 when `h2`,
/// and saying whether the target picked it.
pub(super) async fn connect(cfg: &TargetConfig, h2: bool) -> Result<(BoxIo, bool), ExchangeError> {
    let mut up = cfg.url.clone();
    up.tls = cfg.tls.enabled;
    let config = if h2 { &cfg.tls.h2 } else { &cfg.tls.h1 };
    match dial(cfg.timeout, &up, config).await {
        Ok((dialed, _)) => {
            let picked_h2 = dialed.alpn_h2();
            Ok(match dialed {
                Dialed::Tcp(s) => (Box::pin(s), false),
                Dialed::Tls(s) => (Box::pin(*s), picked_h2),
            })
        }
        Err(e) => Err(ExchangeError::new(e.kind, e.message)),
    }
}

/// The path and query to send: the target's path prefix, then the recorded origin form.
pub(super) fn path_and_query(cfg: &TargetConfig, outgoing: &Exchange) -> String {
    let origin = outgoing.request.origin_form();
    let origin = if origin.starts_with('/') { origin } else { "/" };
    format!("{}{}", cfg.url.base_path, origin)
}

/// The authority to address: `--host`, else the target's.
pub(super) fn authority(cfg: &TargetConfig) -> &str {
    cfg.host_override.as_deref().unwrap_or(&cfg.url.authority)
}

/// The recorded request headers worth sending (no hop-by-hop ones, no HTTP/2 pseudo
/// headers, nothing `--set-header` replaces), then the `--set-header` ones.
pub(super) fn request_headers(cfg: &TargetConfig, outgoing: &Exchange) -> Vec<(String, Vec<u8>)> {
    let replaced = |name: &str| {
        cfg.set_headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let mut out: Vec<(String, Vec<u8>)> = outgoing
        .request
        .headers
        .iter()
        .filter(|h| !h.name.starts_with(':') && !not_copied(&h.name) && !replaced(&h.name))
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    out.extend(
        cfg.set_headers
            .iter()
            .map(|(n, v)| (n.clone(), v.as_bytes().to_vec())),
    );
    out
}

/// Header list of an answer, in the order the client library gives it.
pub(super) fn headers_of(map: &http::HeaderMap) -> Vec<Header> {
    map.iter()
        .map(|(n, v)| Header::new(n.as_str(), v.as_bytes()))
        .collect()
}

/// A copy of `recorded` to send: everything but the recorded answer (cloning its headers
/// only to drop them was ~3% of a `--speed max` profile).
pub(super) fn outgoing_of(recorded: &Exchange) -> Exchange {
    Exchange {
        id: recorded.id,
        connection_id: recorded.connection_id,
        seq: recorded.seq,
        protocol: recorded.protocol,
        started_at_ns: recorded.started_at_ns,
        client_addr: recorded.client_addr.clone(),
        server_addr: recorded.server_addr.clone(),
        scheme: recorded.scheme.clone(),
        authority: recorded.authority.clone(),
        request: recorded.request.clone(),
        response: None,
        timings: recorded.timings,
        error: recorded.error.clone(),
        trace_id: recorded.trace_id.clone(),
        tags: recorded.tags.clone(),
        messages: recorded.messages.clone(),
    }
}

/// The exchange as observed: what was sent (`outgoing`) with the target's answer to come.
pub(super) fn observed_base(outgoing: &Exchange, cfg: &TargetConfig) -> Exchange {
    // The client's half of the stream is re-added as it is sent, with the target's half.
    let sent = Exchange {
        id: outgoing.id,
        connection_id: outgoing.connection_id,
        seq: outgoing.seq,
        protocol: outgoing.protocol,
        client_addr: outgoing.client_addr.clone(),
        server_addr: outgoing.server_addr.clone(),
        request: outgoing.request.clone(),
        trace_id: outgoing.trace_id.clone(),
        tags: outgoing.tags.clone(),
        ..Exchange::default()
    };
    observed_from(sent, cfg)
}

/// As [`observed_base`], taking what was sent instead of copying it (the request's copy
/// was one more allocation per header and string for every HTTP/1 exchange).
pub(super) fn observed_from(outgoing: Exchange, cfg: &TargetConfig) -> Exchange {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Exchange {
        started_at_ns: now,
        scheme: if cfg.tls.enabled { "https" } else { "http" }.into(),
        authority: authority(cfg).into(),
        response: None,
        error: None,
        timings: Default::default(),
        messages: Vec::new(),
        ..outgoing
    }
}

/// Nanoseconds since `began`, saturating.
pub(super) fn since(began: std::time::Instant) -> u64 {
    u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The error a target that did not answer within `timeout` gets.
pub(super) fn timed_out(what: &str, timeout: Duration) -> ExchangeError {
    ExchangeError::new(
        ErrorKind::UpstreamTimeout,
        format!(
            "the target sent no {what} within {}",
            humantime::format_duration(timeout)
        ),
    )
}

/// Why hyper gave up on an exchange, as a kind: bytes that are no HTTP answer are malformed,
/// a connection or stream that ended early is a reset, an HTTP/2 stream refused or reset by
/// the target is a stream error.
pub(super) fn classify(e: &hyper::Error) -> ExchangeError {
    let kind = if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        ErrorKind::MalformedResponse
    } else if e.is_timeout() {
        ErrorKind::UpstreamTimeout
    } else if let Some(h2) = find_source::<h2::Error>(e) {
        if h2.is_io() {
            ErrorKind::UpstreamReset
        } else if h2.is_reset() && h2.is_remote() {
            ErrorKind::StreamError
        } else if h2.reason() == Some(h2::Reason::PROTOCOL_ERROR)
            || h2.reason() == Some(h2::Reason::FRAME_SIZE_ERROR)
        {
            ErrorKind::MalformedResponse
        } else {
            ErrorKind::StreamError
        }
    } else {
        ErrorKind::UpstreamReset
    };
    ExchangeError::new(
        kind,
        format!("the target's answer failed: {}", error_chain(e)),
    )
}

/// The first error of type `T` in `e`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// `e` and its causes, each once.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let part = err.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = err.source();
    }
    text
}
