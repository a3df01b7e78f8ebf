//! One HTTP/2 stream's recording while it is in flight ([`Recording`]), and the body
//! wrapper that forwards each frame as it arrives and shows it to that recording ([`Tee`]).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use std::future::Future;

use tokio::sync::oneshot;

use super::error_chain;
use crate::capture::clock::now_ns;
use crate::capture::recorder::Recorder;
use crate::capture::setup::Proxy;
use crate::model::{Direction, ErrorKind, ExchangeError};
use crate::net::released::watched;
use crate::vocab::headers_from_map;

/// The exchange of one HTTP/2 stream while it is in flight, shared by the two [`Tee`]s of
/// the stream; recorded once, by [`Recording::finish`].
pub(super) struct Recording {
    pub(super) rec: Option<Recorder>,
    /// The upstream's response head arrived.
    pub(super) answered: bool,
    pub(super) proxy: Arc<Proxy>,
}

impl Recording {
    fn data(&mut self, direction: Direction, data: &Bytes) {
        if let Some(r) = self.rec.as_mut() {
            r.half(direction).data(now_ns(), data);
        }
    }

    fn trailers(&mut self, direction: Direction, trailers: &HeaderMap) {
        if let Some(r) = self.rec.as_mut() {
            r.trailers(direction, headers_from_map(trailers));
        }
    }

    fn end(&mut self, direction: Direction) {
        if let Some(r) = self.rec.as_mut() {
            r.end(now_ns(), direction);
        }
    }

    pub(super) fn fail(&mut self, error: ExchangeError) {
        if let Some(r) = self.rec.as_mut() {
            r.fail(error);
        }
    }

    /// Hands the exchange to the sink; later calls do nothing.
    pub(super) fn finish(&mut self) {
        if let Some(r) = self.rec.take() {
            self.proxy.record(r.finish());
        }
    }
}

impl Drop for Recording {
    /// The last holder let go without the exchange being finished: the client reset the
    /// stream before the upstream answered (an expired deadline, a cancelled call).
    fn drop(&mut self) {
        if self.rec.is_some() {
            let message = if !self.answered {
                "client cancelled the stream before the upstream answered"
            } else {
                "client cancelled the stream before the response ended"
            };
            self.fail(ExchangeError::new(ErrorKind::ClientAborted, message));
            self.finish();
        }
    }
}

/// A body passed through frame by frame while its recording watches.
pub(crate) struct Tee {
    inner: Option<Incoming>,
    rec: Arc<Mutex<Recording>>,
    direction: Direction,
    done: bool,
    /// Resolves when h2 has let go of the last DATA passed on.
    released: Option<oneshot::Receiver<()>>,
    /// The peer's stream failed: passed on (so the other side is reset) once `released`
    /// resolves, or h2 would discard the last DATA still queued with the reset.
    failed: Option<hyper::Error>,
}

impl Tee {
    pub(super) fn new(inner: Incoming, rec: Arc<Mutex<Recording>>, direction: Direction) -> Tee {
        Tee {
            inner: Some(inner),
            rec,
            direction,
            done: false,
            released: None,
            failed: None,
        }
    }

    /// The stored failure, once the last DATA has been let go.
    fn poll_failed(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(released) = self.released.as_mut() {
            // Ok or Err alike: the bytes were taken, or dropped with the stream.
            if Pin::new(released).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.released = None;
        }
        Poll::Ready(self.failed.take().map(Err))
    }

    fn with_rec(&self, f: impl FnOnce(&mut Recording)) {
        if let Ok(mut r) = self.rec.lock() {
            f(&mut r);
        }
    }
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if this.failed.is_some() {
            return this.poll_failed(cx);
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let mut polled = Pin::new(inner).poll_frame(cx);
        let direction = this.direction;
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.with_rec(|r| r.data(direction, d));
                } else if let Some(t) = frame.trailers_ref() {
                    this.with_rec(|r| r.trailers(direction, t));
                }
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                let error_text = error_chain(e);
                let message = match direction {
                    Direction::ClientToServer => ExchangeError::new(
                        ErrorKind::ClientAborted,
                        format!("client stream failed: {error_text}"),
                    ),
                    Direction::ServerToClient => ExchangeError::new(
                        ErrorKind::UpstreamReset,
                        format!("upstream stream failed: {error_text}"),
                    ),
                };
                this.with_rec(|r| {
                    r.fail(message);
                    if direction == Direction::ServerToClient {
                        r.end(direction);
                        r.finish();
                    }
                });
            }
            Poll::Ready(None) => {
                this.done = true;
                this.with_rec(|r| {
                    r.end(direction);
                    if direction == Direction::ServerToClient {
                        r.finish();
                    }
                });
            }
            Poll::Pending => {}
        }
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                polled = Poll::Ready(Some(Ok(frame.map_data(|d| {
                    let (d, released) = watched(d);
                    this.released = Some(released);
                    d
                }))));
            }
            Poll::Ready(Some(Err(e))) if this.released.is_some() => {
                this.failed = Some(e);
                return this.poll_failed(cx);
            }
            other => polled = other,
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let ended = self.inner.as_ref().is_none_or(|b| b.is_end_stream());
        let direction = self.direction;
        self.with_rec(|r| {
            if ended {
                r.end(direction);
            } else if direction == Direction::ServerToClient {
                r.fail(ExchangeError::new(
                    ErrorKind::ClientAborted,
                    "client cancelled the stream before the response ended",
                ));
            }
            if direction == Direction::ServerToClient {
                r.finish();
            }
        });
    }
}
