//! Upstream connections of the HTTP/1 driver: opening them (through `capture::dial`) and
//! keeping one alive between the exchanges of a client connection.

use std::net::SocketAddr;

use futures_util::FutureExt;
use tokio::io::AsyncReadExt;

use super::failure::Failure;
use crate::capture::dial::{dial, Dialed};
use crate::capture::io::{BoxRead, BoxWrite};
use crate::capture::setup::{ProxyConfig, Upstream};
use crate::decode::h1::Decoder;
use crate::model::Text;

/// An upstream connection, kept alive between exchanges of one client connection.
pub(super) struct UpstreamConn {
    pub reader: BoxRead,
    pub writer: BoxWrite,
    /// Which origin this connection talks to.
    pub origin: Upstream,
    pub decoder: Decoder,
    /// The upstream's address as recorded, formatted once per connection.
    pub addr_text: Text,
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

/// Opens a connection (TLS for https, ALPN http/1.1) to `up`.
pub(super) async fn connect_upstream(
    config: &ProxyConfig,
    up: &Upstream,
) -> Result<(BoxRead, BoxWrite, SocketAddr), Failure> {
    let (dialed, addr) = dial(config, up, &config.upstream_tls)
        .await
        .map_err(|e| Failure::upstream(e.status, e.kind, e.message))?;
    Ok(match dialed {
        Dialed::Tcp(stream) => {
            let (reader, writer) = stream.into_split();
            (Box::new(reader), Box::new(writer), addr)
        }
        Dialed::Tls(tls) => {
            let (reader, writer) = tokio::io::split(*tls);
            (Box::new(reader), Box::new(writer), addr)
        }
    })
}
