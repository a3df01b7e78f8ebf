//! Where client connections come in: the accept loop, the TLS listener, and the choice
//! between the HTTP/2 driver and the HTTP/1 one. Kept apart so that a shared front door can
//! replace it without touching the exchange logic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::conn::ClientConn;
use crate::capture::io::{BoxRead, BoxWrite};
use crate::capture::setup::Proxy;
use crate::net::Shutdown;

impl Proxy {
    /// Serves one client connection until it closes or shutdown is requested between
    /// exchanges.
    pub async fn handle_connection(
        self: Arc<Self>,
        client: TcpStream,
        peer: SocketAddr,
        shutdown: Shutdown,
    ) {
        if crate::net::starts_with_h2_preface(&client).await {
            let id = self.open_connection();
            crate::capture::h2::serve(self, client, peer, id, shutdown).await;
            return;
        }
        let (reader, writer) = client.into_split();
        self.handle_halves(Box::new(reader), Box::new(writer), peer, shutdown)
            .await;
    }

    /// Serves a client connection that arrived over TLS (`--tls` listener).
    pub async fn handle_tls_connection(
        self: Arc<Self>,
        client: TcpStream,
        peer: SocketAddr,
        shutdown: Shutdown,
        acceptor: tokio_rustls::TlsAcceptor,
    ) {
        match acceptor.accept(client).await {
            Ok(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                let id = self.open_connection();
                crate::capture::h2::serve(self, tls, peer, id, shutdown).await;
            }
            Ok(tls) => {
                let (reader, writer) = tokio::io::split(tls);
                self.handle_halves(Box::new(reader), Box::new(writer), peer, shutdown)
                    .await;
            }
            Err(e) => {
                tracing::info!(peer = %peer, error = %e, "TLS handshake with client failed");
            }
        }
    }

    async fn handle_halves(
        self: Arc<Self>,
        reader: BoxRead,
        writer: BoxWrite,
        peer: SocketAddr,
        shutdown: Shutdown,
    ) {
        let id = self.open_connection();
        let origin = self.config.upstream.clone();
        let mut conn = ClientConn::new(self, reader, writer, peer, id, shutdown, origin);
        conn.run().await;
    }
}

/// Runs `proxy` on `listener` until `shutdown`; with `tls`, clients connect over TLS.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    crate::net::accept_loop(
        listener,
        shutdown,
        Duration::from_secs(5),
        move |stream, peer, shutdown| {
            let proxy = proxy.clone();
            let tls = tls.clone();
            async move {
                match tls {
                    Some(acceptor) => {
                        proxy
                            .handle_tls_connection(stream, peer, shutdown, acceptor)
                            .await
                    }
                    None => proxy.handle_connection(stream, peer, shutdown).await,
                }
            }
        },
    )
    .await;
}
