//! After an upgrade (a WebSocket or other 101) or an opaque CONNECT: the client connection
//! and its upstream relay bytes both ways until either side closes, WebSocket frames decoded
//! on the way and recorded with the exchange.

use tokio::io::AsyncWriteExt;

use super::conn::ClientConn;
use crate::capture::clock::now_ns;
use crate::capture::recorder::Recorder;
use crate::model::Direction;
use crate::net::door::Io;

impl<S: Io> ClientConn<S> {
    /// After a WebSocket 101: relay and decode frames both ways, then record the exchange.
    pub(super) async fn tunnel_websocket(&mut self, mut rec: Recorder) {
        let Some(mut upstream) = self.upstream.take() else {
            self.proxy.record(rec.finish());
            return;
        };
        let client_early = self.decoder.take_buffered();
        let upstream_early = upstream.decoder.take_buffered();
        let session = self.proxy.ws_session();
        let abnormal = crate::capture::ws::relay(
            &mut self.reader,
            &mut self.writer,
            &mut upstream.reader,
            &mut upstream.writer,
            client_early,
            upstream_early,
            &mut rec,
            session.as_ref(),
        )
        .await;
        drop(session);
        if let Some(e) = abnormal {
            tracing::info!(conn = self.id, seq = self.seq, error = %e, "websocket ended abnormally");
        }
        rec.end(now_ns(), Direction::ServerToClient);
        self.proxy.record(rec.finish());
    }

    /// After a 101 (or a CONNECT tunnel): relay bytes both ways until either side closes.
    pub(super) async fn tunnel(&mut self) {
        let Some(mut upstream) = self.upstream.take() else {
            return;
        };
        let client_early = self.decoder.take_buffered();
        let upstream_early = upstream.decoder.take_buffered();
        let to_upstream = async {
            if !client_early.is_empty() {
                upstream.writer.write_all(&client_early).await?;
            }
            tokio::io::copy(&mut self.reader, &mut upstream.writer).await?;
            upstream.writer.shutdown().await
        };
        let to_client = async {
            if !upstream_early.is_empty() {
                self.writer.write_all(&upstream_early).await?;
            }
            tokio::io::copy(&mut upstream.reader, &mut self.writer).await?;
            self.writer.shutdown().await
        };
        let _ = tokio::join!(to_upstream, to_client);
    }
}
