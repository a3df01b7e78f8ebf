//! Opening upstream connections for both proxy drivers: TCP within the connect timeout, TLS
//! for https upstreams with the ALPN list the driver offers (and what the upstream picked),
//! and the prior-knowledge probe that tells an h2c upstream from an HTTP/1-only one.
//!
//! Kept below `proxy` (HTTP/1) and `h2` so that neither imports the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::setup::{ProxyConfig, Upstream};
use crate::model::ErrorKind;

/// An open upstream connection, keeping its concrete type (the HTTP/1 driver splits plain
/// TCP into owned halves, which costs less than a shared split).
pub(crate) enum Dialed {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Dialed {
    /// The upstream chose `h2` in ALPN (RFC 7301); false for cleartext.
    pub(crate) fn alpn_h2(&self) -> bool {
        match self {
            Dialed::Tcp(_) => false,
            Dialed::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

/// Why an upstream connection could not be opened: the status the client gets, the kind
/// the recording keeps, and the message for both.
#[derive(Debug)]
pub(crate) struct DialError {
    pub status: u16,
    pub kind: ErrorKind,
    pub message: String,
}

/// Opens a connection to `up`: TCP, then TLS with `tls` (its ALPN list) for https.
pub(crate) async fn dial(
    config: &ProxyConfig,
    up: &Upstream,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(Dialed, SocketAddr), DialError> {
    let connect = TcpStream::connect((up.host.as_str(), up.port));
    let stream = match tokio::time::timeout(config.connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(DialError {
                status: 502,
                kind: ErrorKind::UpstreamRefused,
                message: format!("upstream {} refused or unreachable: {e}", up.authority),
            })
        }
        Err(_) => {
            return Err(DialError {
                status: 504,
                kind: ErrorKind::UpstreamTimeout,
                message: format!(
                    "upstream {} did not accept a connection within {:?}",
                    up.authority, config.connect_timeout
                ),
            })
        }
    };
    let _ = stream.set_nodelay(true);
    let addr = stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], up.port)));
    if !up.tls {
        return Ok((Dialed::Tcp(stream), addr));
    }
    let name = rustls::pki_types::ServerName::try_from(up.host.clone()).map_err(|e| DialError {
        status: 502,
        kind: ErrorKind::UpstreamTls,
        message: format!("upstream {}: invalid TLS server name: {e}", up.authority),
    })?;
    let handshake = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, stream);
    match tokio::time::timeout(config.connect_timeout, handshake).await {
        Ok(Ok(tls)) => Ok((Dialed::Tls(Box::new(tls)), addr)),
        Ok(Err(e)) => Err(DialError {
            status: 502,
            kind: ErrorKind::UpstreamTls,
            message: format!(
                "TLS handshake with upstream {} failed: {}",
                up.authority,
                crate::tls::handshake_cause(&e)
            ),
        }),
        Err(_) => Err(DialError {
            status: 504,
            kind: ErrorKind::UpstreamTimeout,
            message: format!("TLS handshake with upstream {} timed out", up.authority),
        }),
    }
}

/// Whether the cleartext upstream `up` answers an HTTP/2 prior-knowledge preface with a
/// SETTINGS frame (RFC 9113 §3.4), on a connection of its own; `None` when it could not be
/// asked (unreachable, silent within `within`). An HTTP/1 server answers the preface with
/// an error (a status line, or HTML), whose first bytes are not a SETTINGS frame header.
pub(crate) async fn probe_h2c(up: &Upstream, within: Duration) -> Option<bool> {
    let attempt = async {
        let mut stream = TcpStream::connect((up.host.as_str(), up.port)).await.ok()?;
        // The preface and an empty SETTINGS frame.
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
        if stream.write_all(preface).await.is_err() {
            return Some(false);
        }
        let mut head = [0u8; 9];
        // Frame type 0x4 on stream 0: SETTINGS (RFC 9113 §6.5). An HTTP/1 server that
        // closes (or resets, having left part of the preface unread) is no h2c server.
        Some(
            stream.read_exact(&mut head).await.is_ok()
                && head[3] == 0x04
                && head[5..9] == [0, 0, 0, 0],
        )
    };
    tokio::time::timeout(within, attempt).await.ok().flatten()
}

/// Whether `up` speaks HTTP/2: ALPN for https upstreams, a prior-knowledge preface answered
/// with a SETTINGS frame for http ones. A TLS listener offers clients `h2` only when the
/// upstream takes it, so that clients speak to mf what they would speak to the upstream.
pub async fn upstream_speaks_h2(config: &ProxyConfig, up: &Upstream) -> bool {
    let within = Duration::from_secs(3);
    if !up.tls {
        return probe_h2c(up, within).await == Some(true);
    }
    let mut offer = (*config.upstream_tls_h2).clone();
    offer.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut probe = config.clone();
    probe.connect_timeout = within;
    matches!(dial(&probe, up, &Arc::new(offer)).await, Ok((d, _)) if d.alpn_h2())
}
