//! The recording proxy as a [`Service`] behind the front door ([`crate::net::door`]), which
//! accepts, does the listener's TLS, tells HTTP/2 from HTTP/1 and intercepts CONNECT
//! tunnels. An HTTP/1 connection goes to [`ClientConn`], an HTTP/2 one to
//! [`crate::capture::h2`].

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use super::conn::{ClientConn, Numbering};
use crate::capture::setup::Proxy;
use crate::net::door::{Door, H1Exit, Interceptor, Io, Origin, Service};
use crate::net::Shutdown;

impl Proxy {
    /// The numbering of a connection: carried through a tunnel, or a new connection.
    fn numbering(&self, carried: Option<Numbering>) -> Numbering {
        carried.unwrap_or_else(|| Numbering {
            id: self.open_connection(),
            seq: 0,
        })
    }
}

impl Service for Proxy {
    type Carry = Numbering;

    async fn serve_h1<S: Io>(
        self: Arc<Self>,
        stream: S,
        origin: Origin,
        carried: Option<Numbering>,
        shutdown: Shutdown,
    ) -> H1Exit<S, Numbering> {
        let numbering = self.numbering(carried);
        ClientConn::new(self, stream, &origin, numbering, shutdown)
            .serve()
            .await
    }

    async fn serve_h2<S: Io>(
        self: Arc<Self>,
        stream: S,
        origin: Origin,
        carried: Option<Numbering>,
        shutdown: Shutdown,
    ) {
        // Prior knowledge, `h2` on a TLS listener, or `h2` inside an intercepted tunnel
        // (whose requests go to the tunnel's host).
        let numbering = self.numbering(carried);
        let client = crate::capture::h2::Client {
            peer: origin.peer,
            tunnel: origin.tunnel,
            id: numbering.id,
            first_seq: numbering.seq,
        };
        crate::capture::h2::serve(self, stream, client, shutdown).await;
    }
}

/// Serves one HTTP/1 connection made inside mf (not accepted by a listener), as connection
/// `id`: the recording proxy's whole exchange path, for a caller that holds the request.
pub(crate) async fn serve_internal<S: Io>(
    proxy: Arc<Proxy>,
    stream: S,
    peer: std::net::SocketAddr,
    id: u64,
    shutdown: Shutdown,
) {
    let origin = Origin::internal(peer);
    let numbering = Numbering { id, seq: 0 };
    let _ = ClientConn::new(proxy, stream, &origin, numbering, shutdown)
        .serve()
        .await;
}

/// Runs `proxy` on `listener` until `shutdown`; with `tls`, clients connect over TLS.
/// CONNECT tunnels are intercepted when the proxy has certificates for them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
    tls: Option<TlsAcceptor>,
) {
    let intercept = proxy
        .config
        .intercept_tls
        .clone()
        .map(|config| Arc::new(TlsAcceptor::from(config)) as Arc<dyn Interceptor>);
    let door = Door::new()
        .with_tls(tls)
        .with_intercept(intercept)
        .with_greeting_timeout(proxy.config.client_timeouts.header)
        .with_threads(proxy.config.threads);
    Arc::new(door)
        .serve(listener, proxy, shutdown, super::SHUTDOWN_GRACE)
        .await;
}
