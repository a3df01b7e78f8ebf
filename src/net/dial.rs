//! Opening connections to an upstream (the recording proxy's) or a target (replay's driver):
//! the URL it is named by, TCP within the connect timeout, TLS for https with the ALPN list
//! the caller offers (and what the peer picked), and the prior-knowledge probe that tells an
//! h2c server from an HTTP/1-only one.
//!
//! Kept in `net` so that the proxy drivers (`capture`) and replay's driver (`replay::to`)
//! dial the same way without importing each other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::model::ErrorKind;

/// Where the proxy forwards to.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Speak TLS to it (`https://`).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `host:port` as written in the URL, used for the Host header.
    pub authority: String,
    /// Path prefix from the URL (`http://h/api` → `/api`), without a trailing slash.
    pub base_path: String,
}

impl Upstream {
    /// Parses `http[s]://host[:port][/prefix]`.
    ///
    /// # Errors
    /// Another scheme, or no host.
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "{url}: unsupported scheme {other:?}; use http:// or https://"
                ))
            }
            None => {
                return Err(format!(
                    "{url:?}: the upstream needs a scheme, e.g. http://{url}"
                ))
            }
        };
        let authority = uri.authority().ok_or_else(|| format!("{url}: no host"))?;
        if authority.as_str().ends_with(':') {
            return Err(format!("{url}: empty port"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(Upstream {
            tls,
            host,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.to_string(),
            base_path,
        })
    }

    /// The target of a `CONNECT host:port` request, spoken to over TLS after interception.
    pub(crate) fn from_connect(authority: &str) -> Result<Upstream, String> {
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("bad CONNECT target {authority:?}"))?;
        Ok(Upstream {
            tls: true,
            host,
            port,
            authority: authority.to_string(),
            base_path: String::new(),
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    pub(crate) fn same_origin(&self, other: &Upstream) -> bool {
        self.tls == other.tls
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

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
    connect_timeout: Duration,
    up: &Upstream,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(Dialed, SocketAddr), DialError> {
    let connect = TcpStream::connect((up.host.as_str(), up.port));
    let stream = match tokio::time::timeout(connect_timeout, connect).await {
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
                    up.authority, connect_timeout
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
    match tokio::time::timeout(connect_timeout, handshake).await {
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
