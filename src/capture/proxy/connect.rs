//! `CONNECT host:port` on a forward proxy: ask the front door to intercept the tunnel (it
//! answers, accepts TLS with a minted certificate and brings the connection inside back to
//! the proxy), or relay it untouched for `--passthrough` hosts (recorded as an opaque
//! tunnel).

use super::conn::{ClientConn, Step};
use super::upstream::{connect_upstream, UpstreamConn};
use crate::capture::setup::Upstream;
use crate::decode::h1::{self, Decoder, RequestHead, Role};
use crate::model::Protocol;
use crate::net::door::Io;
use crate::net::reply::CONNECT_ESTABLISHED;

impl<S: Io> ClientConn<S> {
    /// Handles a CONNECT whose head's first byte came at `started_at`: the connection ends
    /// with an opaque tunnel, or goes to the door for interception.
    pub(super) async fn connect(&mut self, head: RequestHead, started_at: i64) -> Step {
        let proxy = self.proxy.clone();
        let up = match Upstream::from_connect(&head.target) {
            Ok(up) => up,
            Err(message) => {
                self.send_simple(400, &format!("mf: {message}\n")).await;
                return Step::Close;
            }
        };
        let passthrough = proxy
            .config
            .passthrough
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&up.host));
        if self.can_intercept && !passthrough {
            return Step::Intercept(head.target.into());
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
            h1::version_text(head.minor),
            head.headers.clone(),
        );
        let mut plain = up.clone();
        plain.tls = false;
        match connect_upstream(&proxy.config, &plain).await {
            Ok((reader, writer, addr)) => {
                rec.exchange_mut().server_addr = Some(compact_str::format_compact!("{addr}"));
                rec.response_head(
                    crate::capture::clock::now_ns(),
                    200,
                    "Connection Established".into(),
                    "HTTP/1.1".into(),
                    Vec::new(),
                );
                if self.send_raw(CONNECT_ESTABLISHED).await.is_err() {
                    return Step::Close;
                }
                self.proxy.record(rec.finish());
                self.upstream = Some(UpstreamConn {
                    reader,
                    writer,
                    origin: plain,
                    decoder: Decoder::new(Role::Response),
                    addr_text: compact_str::format_compact!("{addr}"),
                });
                self.tunnel().await;
            }
            Err(failure) => {
                let (status, error) = failure.into_parts();
                self.fail_and_record(&head.method, rec, status, error).await;
            }
        }
        Step::Close
    }
}
