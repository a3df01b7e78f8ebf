//! Bytes that say when they are let go: how an HTTP/2 sender knows its DATA has left h2's
//! queue before it resets the stream.
//!
//! Why: h2 discards the DATA a reset stream still has queued. A reset sent right after the
//! last frame (a replayed upstream reset, an injected mid-body reset, an upstream that died
//! while the proxy passed its body through) then loses that frame on the way to the client;
//! seen with nghttp as a bare RST_STREAM where three DATA frames were due.

use bytes::Bytes;
use tokio::sync::oneshot;

/// The bytes of one DATA frame, owned so that the receiver resolves once h2 lets go of
/// them: when the connection has copied them into its write buffer (or written them), or
/// dropped the stream.
struct Watched {
    data: Bytes,
    _gone: oneshot::Sender<()>,
}

impl AsRef<[u8]> for Watched {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

/// `data` as bytes whose release the receiver reports (it resolves, with an error, when the
/// last copy is dropped): a reset sent after it resolves cannot discard them.
pub(crate) fn watched(data: Bytes) -> (Bytes, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    (Bytes::from_owner(Watched { data, _gone: tx }), rx)
}
