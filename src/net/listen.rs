//! The listening side of every mf server: an accept loop with graceful shutdown, the
//! shutdown signal, the termination signal and the HTTP/2 preface sniff.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A cloneable "stop now" flag that connection tasks can await.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending side of [`Shutdown`].
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A new trigger and the signal it controls.
pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Asks every holder of the signal to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// True once shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when shutdown is requested (immediately if it already was).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// Accepts connections until `shutdown`, running `handle` for each one; then gives open
/// connections `grace` to finish what they are doing before dropping them.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut shutdown: Shutdown,
    grace: Duration,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Shutdown) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tasks.spawn(handle(stream, peer, shutdown.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C only, off Unix).
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// server calls it before announcing that it listens, so that a signal sent right after the
/// announcement is a clean stop rather than the default action (being killed). Must be
/// called inside a Tokio runtime.
pub fn termination_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let installed = {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Some((int, term)),
            _ => None,
        }
    };
    async move {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = installed {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// True when the client starts with the HTTP/2 preface. Looks without consuming, so an
/// HTTP/1 connection is handed on untouched.
pub async fn starts_with_h2_preface(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 24];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return false;
        }
        if n == H2_PREFACE.len() {
            return true;
        }
        // A preface split across segments: peek returns at once with the same bytes, so
        // wait a little for the rest rather than spin.
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
