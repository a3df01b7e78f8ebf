//! The front door: what happens to an accepted connection before a service sees a request.
//!
//! accept → optional TLS (the listener's, ALPN picks h2 or HTTP/1.1) → HTTP/2 preface or
//! HTTP/1 → the [`Service`]. An HTTP/1 service that reads a `CONNECT` it wants intercepted
//! hands the connection back ([`H1Exit::Intercept`]); the door answers
//! `200 Connection Established`, accepts TLS over the bytes the client already sent after the
//! CONNECT head plus the rest of the stream, and serves what comes through the tunnel with the
//! same service — recursively, so a CONNECT inside a tunnel works too. The service learns
//! where a connection came from through its [`Origin`], and gets back what it asked to be
//! carried into the tunnel ([`Service::Carry`]). A refused interception is logged here, once
//! for every service.
//!
//! Services: the replay (`replay::service`) and the recording proxy (`capture::proxy`).
//!
//! Plain TCP and TLS connections keep their concrete stream types (the hot path is not
//! type-erased); only streams inside a tunnel are boxed.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::{accept_loop_on, starts_with_h2_preface, ConnThreads, Shutdown};

/// A client stream of any kind (TCP, TLS, TLS inside a CONNECT tunnel).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// A type-erased client stream (what a tunnel carries).
pub type BoxIo = Box<dyn Io>;

/// What an HTTP/1 service leaves behind when it is done with a connection.
pub enum H1Exit<S, C = ()> {
    /// The connection is finished; the door drops it.
    Closed,
    /// The client sent `CONNECT authority` and the service wants the tunnel intercepted
    /// (it checked [`Origin::can_intercept`]). `early`: bytes the client sent after the
    /// CONNECT head (the start of its TLS handshake), already read from `stream`. `carry`
    /// goes to the service again with the connection inside the tunnel.
    Intercept {
        stream: S,
        authority: String,
        early: Bytes,
        carry: C,
    },
}

/// A server behind the door: how it speaks HTTP/1 and HTTP/2 on a connection the door has
/// already taken through TLS and protocol detection.
///
/// `carried` is `None` on a connection the door accepted, and what the service put in
/// [`H1Exit::Intercept`] on the connection inside that tunnel.
pub trait Service: Send + Sync + 'static {
    /// What a connection hands on to the connection inside the tunnel it asked the door to
    /// intercept (the recording proxy keeps numbering its exchanges there); `()` for none.
    type Carry: Send + 'static;

    /// Serves an HTTP/1 connection until it ends or asks for interception.
    fn serve_h1<S: Io>(
        self: Arc<Self>,
        stream: S,
        origin: Origin,
        carried: Option<Self::Carry>,
        shutdown: Shutdown,
    ) -> impl Future<Output = H1Exit<S, Self::Carry>> + Send;

    /// Serves an HTTP/2 connection (prior knowledge, or `h2` chosen by ALPN).
    fn serve_h2<S: Io>(
        self: Arc<Self>,
        stream: S,
        origin: Origin,
        carried: Option<Self::Carry>,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + Send;
}

/// Where a connection came from, as far as the door knows.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection is TLS (the listener's, or an intercepted tunnel's).
    pub tls: bool,
    /// The authority of the CONNECT tunnel this connection arrived through (the innermost).
    pub tunnel: Option<String>,
    reset: ResetSwitch,
    can_intercept: bool,
}

impl Origin {
    /// A connection made inside mf rather than accepted by a listener (record-on-miss hands
    /// the recording proxy a request this way): plain, no tunnel, nothing to intercept.
    pub fn internal(peer: SocketAddr) -> Origin {
        Origin {
            peer,
            tls: false,
            tunnel: None,
            reset: ResetSwitch::default(),
            can_intercept: false,
        }
    }

    /// True when the door can intercept a CONNECT (it has an [`Interceptor`]); otherwise a
    /// service answers CONNECT itself.
    pub fn can_intercept(&self) -> bool {
        self.can_intercept
    }

    /// Makes the TCP connection underneath end with RST instead of FIN when it closes (for
    /// faults that act on TCP itself). Works through TLS and tunnels.
    pub fn reset_on_close(&self) {
        self.reset.0.store(true, Ordering::Relaxed);
    }
}

/// Shared flag between [`Origin`] and the [`Tcp`] stream it describes.
#[derive(Clone, Debug, Default)]
struct ResetSwitch(Arc<AtomicBool>);

/// An accepted TCP stream that honours [`Origin::reset_on_close`]: when armed, SO_LINGER is
/// set to zero just before the socket closes, so the kernel sends RST.
pub struct Tcp {
    inner: TcpStream,
    reset: ResetSwitch,
}

impl Drop for Tcp {
    fn drop(&mut self) {
        if self.reset.0.load(Ordering::Relaxed) {
            let _ = socket2::SockRef::from(&self.inner).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for Tcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A stream whose first bytes were already read: `early` is served before the rest.
struct Prefixed<S> {
    early: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early[..n]);
            self.early.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Supplies the TLS configuration for intercepted tunnels.
pub trait Interceptor: Send + Sync {
    /// The acceptor for a tunnel; `None` when interception cannot work (the door then
    /// answers the CONNECT with 502).
    fn acceptor(&self) -> Option<TlsAcceptor>;
}

/// A fixed interception configuration, built before the listener opened.
impl Interceptor for TlsAcceptor {
    fn acceptor(&self) -> Option<TlsAcceptor> {
        Some(self.clone())
    }
}

/// The error text of a failed [`LazyInterceptor`] set-up.
pub type SetupError = String;

/// Builds the interception TLS configuration on the first CONNECT, not before: loading or
/// creating a CA is a side effect (a key file on disk) that a server which is never asked
/// to intercept must not have. A failed build is reported once and not retried.
pub struct LazyInterceptor {
    #[allow(clippy::type_complexity)]
    make: Box<dyn Fn() -> Result<Arc<rustls::ServerConfig>, SetupError> + Send + Sync>,
    built: OnceLock<Option<TlsAcceptor>>,
}

impl LazyInterceptor {
    /// An interceptor that calls `make` when the first tunnel needs it.
    pub fn new(
        make: impl Fn() -> Result<Arc<rustls::ServerConfig>, SetupError> + Send + Sync + 'static,
    ) -> LazyInterceptor {
        LazyInterceptor {
            make: Box::new(make),
            built: OnceLock::new(),
        }
    }

    /// True once the configuration was built (or its build failed).
    pub fn is_built(&self) -> bool {
        self.built.get().is_some()
    }
}

impl Interceptor for LazyInterceptor {
    fn acceptor(&self) -> Option<TlsAcceptor> {
        self.built
            .get_or_init(|| match (self.make)() {
                Ok(config) => Some(TlsAcceptor::from(config)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot intercept CONNECT tunnels");
                    None
                }
            })
            .clone()
    }
}

/// The front door of one listener.
#[derive(Default)]
pub struct Door {
    tls: Option<TlsAcceptor>,
    intercept: Option<Arc<dyn Interceptor>>,
    /// How long a new connection may take to show what it speaks (its first bytes, or its
    /// TLS handshake) before the door closes it: a silent client otherwise held a
    /// descriptor for ever, before any service's own timeouts could start.
    greeting_timeout: Option<Duration>,
    /// Connection threads to deal connections to; 0: the caller's runtime runs them.
    threads: usize,
}

impl Door {
    /// A door for plain TCP, without interception.
    pub fn new() -> Door {
        Door::default()
    }

    /// Clients connect over TLS with this acceptor (its ALPN list picks h2 or HTTP/1.1).
    pub fn with_tls(mut self, acceptor: Option<TlsAcceptor>) -> Door {
        self.tls = acceptor;
        self
    }

    /// Connections that send nothing (or do not finish their TLS handshake) within `limit`
    /// are closed.
    pub fn with_greeting_timeout(mut self, limit: Duration) -> Door {
        self.greeting_timeout = Some(limit);
        self
    }

    /// Connections run on `count` threads of their own (see `net::threads`) rather than on
    /// the runtime that accepts them; 0 keeps them on the accepting runtime.
    pub fn with_threads(mut self, count: usize) -> Door {
        self.threads = count;
        self
    }

    /// True when clients connect over TLS.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// CONNECT tunnels may be intercepted with certificates from `intercept`.
    pub fn with_intercept(mut self, intercept: Option<Arc<dyn Interceptor>>) -> Door {
        self.intercept = intercept;
        self
    }

    /// Accepts connections on `listener` until `shutdown` and takes each through the door to
    /// `service`; open connections get `grace` to finish.
    pub async fn serve<S: Service>(
        self: Arc<Self>,
        listener: TcpListener,
        service: Arc<S>,
        shutdown: Shutdown,
        grace: Duration,
    ) {
        let threads = match self.threads {
            0 => None,
            n => ConnThreads::start(n)
                .inspect_err(|e| tracing::warn!(error = %e, "cannot start connection threads; serving connections on the accepting runtime"))
                .ok(),
        };
        let door = self.clone();
        let handle = move |stream, peer, shutdown| {
            let door = door.clone();
            let service = service.clone();
            async move { door.connection(service, stream, peer, shutdown).await }
        };
        accept_loop_on(listener, shutdown, grace, threads.as_ref(), handle).await;
        // Stops the threads once the loop has let their connections go.
        drop(threads);
    }

    /// Takes one accepted connection through the door.
    pub async fn connection<S: Service>(
        self: Arc<Self>,
        service: Arc<S>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: Shutdown,
    ) {
        let reset = ResetSwitch::default();
        let mut origin = Origin {
            peer,
            tls: false,
            tunnel: None,
            reset: reset.clone(),
            can_intercept: self.intercept.is_some(),
        };
        match self.tls.clone() {
            None => {
                let Some(h2) = self.greeting(starts_with_h2_preface(&stream)).await else {
                    tracing::debug!(peer = %peer, "client sent nothing in time: closing");
                    return;
                };
                let stream = Tcp {
                    inner: stream,
                    reset,
                };
                self.hand_over(service, stream, h2, origin, None, shutdown)
                    .await;
            }
            Some(acceptor) => {
                let stream = Tcp {
                    inner: stream,
                    reset,
                };
                // The TLS paths are boxed, and HTTP/2 below: inline, their state (a TLS
                // session, an h2 connection) sized every connection's task, so that an idle
                // plain HTTP/1 keep-alive connection held a 10 KiB future.
                let Some(accepted) = self.greeting(Box::pin(acceptor.accept(stream))).await else {
                    tracing::info!(peer = %peer, "TLS handshake with client not finished in time: closing");
                    return;
                };
                match accepted {
                    Ok(tls) => {
                        origin.tls = true;
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        Box::pin(self.hand_over(service, tls, h2, origin, None, shutdown)).await;
                    }
                    Err(e) => {
                        let cause = crate::tls::handshake_cause(&e);
                        tracing::info!(peer = %peer, cause = %cause, "TLS handshake with client failed")
                    }
                }
            }
        }
    }

    /// `greeting` within the greeting timeout, if one is set; `None` when it ran out.
    async fn greeting<T>(&self, greeting: impl Future<Output = T>) -> Option<T> {
        match self.greeting_timeout {
            Some(limit) => tokio::time::timeout(limit, greeting).await.ok(),
            None => Some(greeting.await),
        }
    }

    /// Hands a connection whose protocol is known to the service: HTTP/2, or HTTP/1 and then
    /// the tunnel it may ask to intercept.
    async fn hand_over<S: Service, T: Io>(
        self: Arc<Self>,
        service: Arc<S>,
        stream: T,
        h2: bool,
        origin: Origin,
        carried: Option<S::Carry>,
        shutdown: Shutdown,
    ) {
        if h2 {
            Box::pin(service.serve_h2(stream, origin, carried, shutdown)).await;
            return;
        }
        let exit = service
            .clone()
            .serve_h1(stream, origin.clone(), carried, shutdown.clone())
            .await;
        self.after_h1(service, exit, origin, shutdown).await;
    }

    async fn after_h1<S: Service, T: Io>(
        self: Arc<Self>,
        service: Arc<S>,
        exit: H1Exit<T, S::Carry>,
        origin: Origin,
        shutdown: Shutdown,
    ) {
        if let H1Exit::Intercept {
            stream,
            authority,
            early,
            carry,
        } = exit
        {
            let request = Tunnel {
                stream: Box::new(stream),
                authority,
                early,
                carry,
            };
            self.tunnel(service, request, origin, shutdown).await;
        }
    }

    /// Answers the CONNECT and serves the intercepted tunnel. Boxed: a tunnel may carry
    /// another CONNECT, which recurses here.
    fn tunnel<S: Service>(
        self: Arc<Self>,
        service: Arc<S>,
        request: Tunnel<S::Carry>,
        mut origin: Origin,
        shutdown: Shutdown,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let Tunnel {
                mut stream,
                authority,
                early,
                carry,
            } = request;
            let Some(acceptor) = self.intercept.as_ref().and_then(|i| i.acceptor()) else {
                let _ = super::reply::write_simple(
                    &mut stream,
                    502,
                    "mf: cannot intercept this tunnel (no certificate authority)\n",
                )
                .await;
                return;
            };
            if stream
                .write_all(super::reply::CONNECT_ESTABLISHED)
                .await
                .is_err()
            {
                return;
            }
            let joined = Prefixed {
                early,
                inner: stream,
            };
            let tls = match acceptor.accept(joined).await {
                Ok(tls) => tls,
                Err(e) => {
                    // The one place a failed interception is reported, for every service,
                    // with the cause rustls saw: a client offering only protocols the
                    // listener lacks is not a trust problem, and must not be blamed on one.
                    let cause = crate::tls::handshake_cause(&e);
                    if crate::tls::is_trust_failure(&e) {
                        tracing::warn!(peer = %origin.peer, host = %authority, cause = %cause,
                            "intercepted TLS handshake failed (clients must trust the mf CA: `mf ca path`)");
                    } else {
                        tracing::warn!(peer = %origin.peer, host = %authority, cause = %cause,
                            "intercepted TLS handshake failed");
                    }
                    return;
                }
            };
            origin.tls = true;
            origin.tunnel = Some(authority);
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            self.hand_over(service, tls, h2, origin, Some(carry), shutdown)
                .await;
        })
    }
}

/// A CONNECT a service asked the door to intercept, with the stream type erased.
struct Tunnel<C> {
    stream: BoxIo,
    authority: String,
    early: Bytes,
    carry: C,
}

#[cfg(test)]
#[path = "door_tests.rs"]
mod tests;
