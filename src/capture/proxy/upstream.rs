//! Upstream connections: opening them (TCP, TLS for https), keeping one alive between the
//! exchanges of a client connection, and probing whether an upstream speaks HTTP/2.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::failure::Failure;
use crate::capture::io::{BoxRead, BoxWrite};
use crate::capture::setup::{ProxyConfig, Upstream};
use crate::decode::h1::Decoder;
use crate::model::ErrorKind;

/// An upstream connection, kept alive between exchanges of one client connection.
pub(super) struct UpstreamConn {
    pub reader: BoxRead,
    pub writer: BoxWrite,
    /// Which origin this connection talks to.
    pub origin: Upstream,
    pub decoder: Decoder,
    pub addr: SocketAddr,
    /// Read buffer, kept across exchanges: allocating 64 KiB per request showed in profiles.
    pub buf: Vec<u8>,
}

impl UpstreamConn {
    /// False when the upstream closed the idle connection (or sent something unasked).
    pub(super) fn is_reusable(&mut self) -> bool {
        // One poll with no waker: pending means the idle connection is still open. Works the
        // same for plain and TLS streams, unlike a peek on the socket.
        let mut probe = [0u8; 1];
        self.reader.read(&mut probe).now_or_never().is_none()
    }
}

/// Opens a connection (TLS for https) to `up`.
pub(super) async fn connect_upstream(
    config: &ProxyConfig,
    up: &Upstream,
) -> Result<(BoxRead, BoxWrite, SocketAddr), Failure> {
    {
        let target = (up.host.as_str(), up.port);
        let connect = TcpStream::connect(target);
        let stream = match tokio::time::timeout(config.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(Failure::Upstream {
                    status: 502,
                    kind: ErrorKind::UpstreamRefused,
                    message: format!("upstream {} refused or unreachable: {e}", up.authority),
                })
            }
            Err(_) => {
                return Err(Failure::Upstream {
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
            let (reader, writer) = stream.into_split();
            return Ok((Box::new(reader), Box::new(writer), addr));
        }
        let name = rustls::pki_types::ServerName::try_from(up.host.clone()).map_err(|e| {
            Failure::Upstream {
                status: 502,
                kind: ErrorKind::UpstreamTls,
                message: format!("upstream {}: invalid TLS server name: {e}", up.authority),
            }
        })?;
        let connector = tokio_rustls::TlsConnector::from(config.upstream_tls.clone());
        let handshake = connector.connect(name, stream);
        match tokio::time::timeout(config.connect_timeout, handshake).await {
            Ok(Ok(tls)) => {
                let (reader, writer) = tokio::io::split(tls);
                Ok((Box::new(reader), Box::new(writer), addr))
            }
            Ok(Err(e)) => Err(Failure::Upstream {
                status: 502,
                kind: ErrorKind::UpstreamTls,
                message: format!("TLS handshake with upstream {} failed: {e}", up.authority),
            }),
            Err(_) => Err(Failure::Upstream {
                status: 504,
                kind: ErrorKind::UpstreamTimeout,
                message: format!("TLS handshake with upstream {} timed out", up.authority),
            }),
        }
    }
}

/// Whether `up` speaks HTTP/2: ALPN for https upstreams, a prior-knowledge preface answered
/// with a SETTINGS frame for http ones. A TLS listener offers clients `h2` only when the
/// upstream can take it, so that the protocol a client picks can be forwarded as it is.
pub async fn upstream_speaks_h2(config: &ProxyConfig, up: &Upstream) -> bool {
    let attempt = async {
        let stream = TcpStream::connect((up.host.as_str(), up.port)).await.ok()?;
        if up.tls {
            let name = rustls::pki_types::ServerName::try_from(up.host.clone()).ok()?;
            let mut alpn = (*config.upstream_tls_h2).clone();
            alpn.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let tls = tokio_rustls::TlsConnector::from(Arc::new(alpn))
                .connect(name, stream)
                .await
                .ok()?;
            return Some(tls.get_ref().1.alpn_protocol() == Some(b"h2"));
        }
        let mut stream = stream;
        // Client preface (RFC 9113 §3.4) and an empty SETTINGS frame.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .ok()?;
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.ok()?;
        Some(head[3] == 0x04)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Some(true))
    )
}
