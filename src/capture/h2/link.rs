//! The upstream side of one HTTP/2 client connection: which upstream its requests go to
//! (the reverse proxy's, or the host of the CONNECT tunnel it came through), in which HTTP
//! version, and the connections that carry them.
//!
//! The client's protocol is not forced on the upstream: an https upstream is offered `h2`
//! and `http/1.1` and picks (RFC 7301); a cleartext one is asked once with a
//! prior-knowledge preface whether it speaks h2c (RFC 9113 §3.3), and the answer is kept in
//! [`crate::capture::setup::Learned`]. An upstream that speaks only HTTP/1.1 gets each
//! stream as an HTTP/1.1 request on a connection of a small pool (HTTP/1.1 carries one
//! exchange at a time), as nginx and Envoy do. `--upstream-http2` can force either way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use http::{HeaderMap, HeaderValue};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::error_chain;
use super::tee::Tee;
use crate::capture::dial::{dial, probe_h2c, DialError, Dialed};
use crate::capture::io::AsyncIo;
use crate::capture::setup::{Http2Policy, Proxy, Upstream};
use crate::model::ErrorKind;

/// HTTP/1.1 connections kept per client connection; more concurrent streams than this
/// still get a connection each, which is closed after its exchange.
const H1_POOL: usize = 32;

/// A connection that can take the next request of a stream.
pub(super) enum Sender {
    H2(http2::SendRequest<Tee>),
    H1(http1::SendRequest<Tee>),
}

/// The upstream connections of one HTTP/2 client connection, opened on first use.
pub(super) struct Links {
    /// Where requests go; `None` for a forward proxy's HTTP/2 connection outside a tunnel.
    pub(super) target: Option<Upstream>,
    h2: tokio::sync::Mutex<Option<http2::SendRequest<Tee>>>,
    /// HTTP/1.1 connections, idle or still answering.
    h1: Mutex<Vec<http1::SendRequest<Tee>>>,
    /// The upstream was found to speak HTTP/1.1 only.
    h1_only: AtomicBool,
    addr: Mutex<Option<String>>,
}

impl Links {
    /// Links to `target`.
    pub(super) fn new(target: Option<Upstream>) -> Links {
        Links {
            target,
            h2: tokio::sync::Mutex::new(None),
            h1: Mutex::new(Vec::new()),
            h1_only: AtomicBool::new(false),
            addr: Mutex::new(None),
        }
    }

    /// The upstream's address, once connected.
    pub(super) fn addr(&self) -> Option<String> {
        self.addr.lock().ok().and_then(|a| a.clone())
    }

    /// A connection for the next stream: the shared HTTP/2 one, or an HTTP/1.1 one of the
    /// pool (to be handed back with [`Links::give_back`] once the response head came).
    pub(super) async fn sender(&self, proxy: &Proxy) -> Result<Sender, DialError> {
        let Some(up) = self.target.as_ref() else {
            return Err(DialError {
                status: 502,
                kind: ErrorKind::Other,
                message: "HTTP/2 with prior knowledge is proxied only in reverse-proxy mode \
                          (--upstream) or inside a CONNECT tunnel"
                    .into(),
            });
        };
        let config = &proxy.config;
        if !self.h1_only.load(Ordering::Relaxed) {
            let mut guard = self.h2.lock().await;
            if let Some(s) = guard.as_ref() {
                if !s.is_closed() {
                    return Ok(Sender::H2(s.clone()));
                }
            }
            let h2 = match (up.tls, config.upstream_http2) {
                (_, Http2Policy::Never) => false,
                (true, _) | (false, Http2Policy::Always) => true,
                (false, Http2Policy::Auto) => match proxy.learned.h2c(up) {
                    Some(known) => known,
                    None => match probe_h2c(up, config.connect_timeout).await {
                        Some(found) => {
                            tracing::info!(upstream = %up.authority, h2c = found, "learned whether the upstream speaks h2c");
                            proxy.learned.set_h2c(up, found);
                            found
                        }
                        // Unreachable: the connection below reports why.
                        None => true,
                    },
                },
            };
            if h2 {
                let (dialed, addr) = dial(config, up, &config.upstream_tls_h2).await?;
                self.set_addr(addr);
                // ALPN decides for https; `always` insists on h2 even without it.
                let speaks_h2 =
                    !up.tls || dialed.alpn_h2() || config.upstream_http2 == Http2Policy::Always;
                if speaks_h2 {
                    let sender = h2_handshake(up, dialed).await?;
                    *guard = Some(sender.clone());
                    return Ok(Sender::H2(sender));
                }
                self.h1_only.store(true, Ordering::Relaxed);
                return Ok(Sender::H1(h1_handshake(up, dialed).await?));
            }
            self.h1_only.store(true, Ordering::Relaxed);
        }
        if let Ok(mut pool) = self.h1.lock() {
            pool.retain(|s| !s.is_closed());
            if let Some(i) = pool.iter().position(|s| s.is_ready()) {
                return Ok(Sender::H1(pool.swap_remove(i)));
            }
        }
        // Known to speak HTTP/1.1: offer only that.
        let (dialed, addr) = dial(config, up, &config.upstream_tls).await?;
        self.set_addr(addr);
        Ok(Sender::H1(h1_handshake(up, dialed).await?))
    }

    /// Keeps an HTTP/1.1 connection for later streams (it is ready again once the response
    /// it is carrying has been read).
    pub(super) fn give_back(&self, sender: http1::SendRequest<Tee>) {
        if let Ok(mut pool) = self.h1.lock() {
            if pool.len() < H1_POOL && !sender.is_closed() {
                pool.push(sender);
            }
        }
    }

    fn set_addr(&self, addr: std::net::SocketAddr) {
        if let Ok(mut slot) = self.addr.lock() {
            *slot = Some(addr.to_string());
        }
    }
}

fn boxed(dialed: Dialed) -> Box<dyn AsyncIo> {
    match dialed {
        Dialed::Tcp(s) => Box::new(s),
        Dialed::Tls(s) => s,
    }
}

async fn h2_handshake(up: &Upstream, dialed: Dialed) -> Result<http2::SendRequest<Tee>, DialError> {
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(boxed(dialed)))
        .await
        .map_err(|e| refused(up, "HTTP/2", &e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::info!(error = %e, "upstream http/2 connection ended with an error");
        }
    });
    Ok(sender)
}

async fn h1_handshake(up: &Upstream, dialed: Dialed) -> Result<http1::SendRequest<Tee>, DialError> {
    let (sender, conn) = http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(boxed(dialed)))
        .await
        .map_err(|e| refused(up, "HTTP/1.1", &e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::info!(error = %e, "upstream http/1.1 connection ended with an error");
        }
    });
    Ok(sender)
}

fn refused(up: &Upstream, what: &str, e: &hyper::Error) -> DialError {
    DialError {
        status: 502,
        kind: ErrorKind::UpstreamRefused,
        message: format!(
            "upstream {} refused the {what} handshake: {}",
            up.authority,
            error_chain(e)
        ),
    }
}

/// An HTTP/2 request's fields as an HTTP/1.1 request carries them (RFC 9113 §8.2.3):
/// the `cookie` fields, which HTTP/2 may split, joined into one with "; "; `host` set to
/// `host` (HTTP/1.1 needs it; HTTP/2 names it in `:authority`).
pub(super) fn h1_request_headers(from: &HeaderMap, host: &str) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len() + 1);
    if let Ok(v) = HeaderValue::from_str(host) {
        out.insert(http::header::HOST, v);
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in from {
        if name == http::header::HOST {
            continue;
        }
        if name == http::header::COOKIE {
            cookies.push(value.as_bytes());
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if !cookies.is_empty() {
        if let Ok(v) = HeaderValue::from_bytes(&cookies.join(&b"; "[..])) {
            out.insert(http::header::COOKIE, v);
        }
    }
    out
}

/// Removes the fields an HTTP/1.1 response may carry that are not allowed in HTTP/2
/// (RFC 9113 §8.2.2): `Connection` and the fields it names, and the other hop-by-hop ones.
pub(super) fn strip_connection_fields(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_joined_and_host_is_named_for_http1() {
        let mut h = HeaderMap::new();
        h.append("cookie", HeaderValue::from_static("a=1"));
        h.append("accept", HeaderValue::from_static("*/*"));
        h.append("cookie", HeaderValue::from_static("b=2"));
        let out = h1_request_headers(&h, "api.test:8080");
        assert_eq!(out["host"], "api.test:8080");
        assert_eq!(out["cookie"], "a=1; b=2");
        assert_eq!(out["accept"], "*/*");
    }

    #[test]
    fn connection_specific_fields_do_not_reach_an_http2_client() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("keep-alive, x-hop"));
        h.append("keep-alive", HeaderValue::from_static("timeout=5"));
        h.append("x-hop", HeaderValue::from_static("1"));
        h.append("transfer-encoding", HeaderValue::from_static("chunked"));
        h.append("content-type", HeaderValue::from_static("text/plain"));
        strip_connection_fields(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["content-type"], "text/plain");
    }
}
