//! HTTP/2 response bodies the replay hands to hyper: known in full, fed by a player task, or
//! failing (an `Err` makes hyper reset the stream with RST_STREAM — how a reset is replayed).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::net::released::watched;

use super::latency::{paced_write, Pacing};

/// The error that ends a stream with RST_STREAM.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every HTTP/2 answer's body type.
pub(crate) type ReplayBody = UnsyncBoxBody<Bytes, BoxError>;

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: String) -> Response<ReplayBody> {
    let mut r = Response::new(UnsyncBoxBody::new(
        Full::new(Bytes::from(body)).map_err(|never| match never {}),
    ));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A body that sends `data` and then fails, so hyper resets the stream.
pub(crate) fn failing(data: Option<Bytes>) -> ReplayBody {
    // h2 discards the DATA a reset stream still has queued: the error (the reset) waits
    // until h2 has let go of the bytes, or the client would get the head and nothing else
    // (seen every time with curl over h2c).
    let (data, released) = match data {
        Some(d) => {
            let (d, released) = watched(d);
            (Some(d), Some(released))
        }
        None => (None, None),
    };
    let head = futures_util::stream::iter(data.map(|d| Ok(Frame::data(d))));
    let reset = futures_util::stream::once(async move {
        if let Some(released) = released {
            // Nothing sends on it: the sender goes with the last copy of the bytes.
            let _ = released.await;
        }
        Err::<Frame<Bytes>, BoxError>("mf: injected fault: stream reset".into())
    });
    UnsyncBoxBody::new(http_body_util::StreamBody::new(head.chain(reset)))
}

/// An empty body.
pub(crate) fn empty() -> ReplayBody {
    UnsyncBoxBody::new(http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}))
}

/// A body known in full: data frames, then optional trailers.
pub(crate) struct FixedBody {
    data: std::collections::VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl FixedBody {
    pub(crate) fn new(
        data: std::collections::VecDeque<Bytes>,
        trailers: Option<HeaderMap>,
    ) -> Self {
        FixedBody { data, trailers }
    }
}

impl HttpBody for FixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        while let Some(d) = self.data.pop_front() {
            if !d.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(d))));
            }
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.iter().all(|d| d.is_empty()) && self.trailers.is_none()
    }
}

/// A body fed frame by frame by a player task; an `Err` resets the stream.
pub(crate) struct ChannelBody {
    pub(crate) rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}

/// `data` (then `trailers`) sent at `pacing`: the same pacer as HTTP/1 writes into a pipe
/// whose other end becomes DATA frames, so both protocols drip at the same rate.
pub(crate) fn paced(data: Bytes, pacing: Pacing, trailers: Option<HeaderMap>) -> ReplayBody {
    // `Chunks` without the chunk table (a fault body, say) is a burst, as in `paced_write`.
    if matches!(pacing, Pacing::Burst | Pacing::Chunks(_)) || data.is_empty() {
        return UnsyncBoxBody::new(FixedBody::new([data].into(), trailers));
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    tokio::spawn(async move {
        let (mut w, mut r) = tokio::io::duplex(64 * 1024);
        let writer = async move {
            let _ = paced_write(&mut w, &data, pacing).await;
        };
        let reader = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let frame = Frame::data(Bytes::copy_from_slice(&buf[..n]));
                        if tx.send(Ok(frame)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            if let Some(t) = trailers {
                let _ = tx.send(Ok(Frame::trailers(t))).await;
            }
        };
        tokio::join!(writer, reader);
    });
    UnsyncBoxBody::new(ChannelBody { rx })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paced_body_arrives_whole_and_no_faster_than_its_pace() {
        let start = tokio::time::Instant::now();
        let data = Bytes::from(vec![7u8; 100]);
        let body = paced(data.clone(), Pacing::Bandwidth(400), None);
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(got, data);
        // 20 bytes per 50 ms tick: five chunks, four waits between them.
        assert!(
            start.elapsed() >= Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
    }
}
