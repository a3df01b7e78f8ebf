//! `CONNECT host:port` on a forward proxy: intercept the tunnel with a minted certificate
//! and serve the HTTP inside it as another client connection, or relay it untouched for
//! `--passthrough` hosts (recorded as an opaque tunnel). Kept apart so that a shared front
//! door can take CONNECT over.

use tokio::io::AsyncReadExt;

use super::conn::ClientConn;
use super::upstream::{connect_upstream, UpstreamConn};
use crate::capture::setup::Upstream;
use crate::decode::h1::{Decoder, RequestHead, Role};
use crate::model::Protocol;

impl ClientConn {
    /// Handles a CONNECT whose head's first byte came at `started_at`. Returns false: the
    /// connection ends with the tunnel.
    pub(super) async fn connect(&mut self, head: RequestHead, started_at: i64) -> bool {
        let proxy = self.proxy.clone();
        let up = match Upstream::from_connect(&head.target) {
            Ok(up) => up,
            Err(message) => {
                let _ = self
                    .send_simple(400, "Bad Request", &format!("mf: {message}\n"), true)
                    .await;
                return false;
            }
        };
        let passthrough = proxy
            .config
            .passthrough
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&up.host));
        let intercept = match (&proxy.config.intercept_tls, passthrough) {
            (Some(cfg), false) => Some(cfg.clone()),
            _ => None,
        };
        if let Some(tls_config) = intercept {
            if self
                .send_raw(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
                .is_err()
            {
                return false;
            }
            // Bytes the client sent after the CONNECT head belong to the TLS handshake.
            let early = self.decoder.take_buffered();
            let reader = std::mem::replace(&mut self.reader, Box::new(tokio::io::empty()));
            let writer = std::mem::replace(&mut self.writer, Box::new(tokio::io::sink()));
            let stream = tokio::io::join(std::io::Cursor::new(early).chain(reader), writer);
            let tls = match tokio_rustls::TlsAcceptor::from(tls_config)
                .accept(stream)
                .await
            {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::warn!(conn = self.id, host = %up.authority, error = %e,
                        "client refused the intercepted TLS handshake (does it trust the mf CA? see `mf ca path`)");
                    return false;
                }
            };
            let (reader, writer) = tokio::io::split(tls);
            let mut inner = ClientConn::new(
                proxy,
                Box::new(reader),
                Box::new(writer),
                self.peer,
                self.id,
                self.shutdown.clone(),
                Some(up),
            );
            inner.seq = self.seq;
            Box::pin(inner.run()).await;
            return false;
        }
        // Opaque tunnel: connect first so that a dead host gets a 502, not a 200.
        let mut rec = self.recorder(started_at, Protocol::Http11, &up.authority);
        rec.exchange_mut().scheme = "https".into();
        rec.exchange_mut()
            .tags
            .insert("tunnel".into(), "opaque".into());
        rec.request_head(
            head.method.clone(),
            head.target.clone(),
            format!("HTTP/1.{}", head.minor),
            head.headers.clone(),
        );
        let mut plain = up.clone();
        plain.tls = false;
        match connect_upstream(&proxy.config, &plain).await {
            Ok((reader, writer, addr)) => {
                rec.exchange_mut().server_addr = Some(addr.to_string());
                rec.response_head(
                    crate::capture::clock::now_ns(),
                    200,
                    "Connection Established".into(),
                    "HTTP/1.1".into(),
                    Vec::new(),
                );
                if self
                    .send_raw(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return false;
                }
                self.proxy.record(rec.finish());
                self.upstream = Some(UpstreamConn {
                    reader,
                    writer,
                    origin: plain,
                    decoder: Decoder::new(Role::Response),
                    addr,
                    buf: Vec::new(),
                });
                self.tunnel().await;
            }
            Err(failure) => {
                let (status, error) = failure.into_parts();
                self.fail_and_record(rec, status, error).await;
            }
        }
        false
    }
}
