//! HTTP/2 response bodies the replay hands to hyper: known in full, fed by a player task, or
//! failing (an `Err` makes hyper reset the stream with RST_STREAM — how a reset is replayed).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

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
    let frames = data
        .into_iter()
        .map(|d| Ok(Frame::data(d)))
        .chain(std::iter::once(Err::<Frame<Bytes>, BoxError>(
            "mf: injected fault: stream reset".into(),
        )));
    UnsyncBoxBody::new(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )))
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
