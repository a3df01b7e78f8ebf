//! Streamed bodies at their recorded pace: a body's chunk table (`model::BodyChunk`) becomes
//! a schedule of pieces, each due some time after the answer's first byte. HTTP/1 writes the
//! pieces to the connection ([`write`]), HTTP/2 sends them as DATA frames ([`h2_body`]).
//!
//! Sleeps go to absolute due times (`sleep_until`), so a slow write does not push every later
//! piece back, and they go through `tokio::time`, so tests run on a paused clock and assert
//! exact virtual delays. Which answers are paced this way is decided by
//! [`super::latency::body_pacing`].

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::body::{BoxError, ChannelBody, ReplayBody};
use crate::model::{Body, BodyChunk, Timings};

/// One piece of a body and when it is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// After the answer's first byte (before any scaling).
    pub after: Duration,
    /// Where the piece lies in the body it is cut from.
    pub range: Range<usize>,
}

/// The schedule of a recorded body that arrived in timed chunks.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TimedBody {
    /// Pieces of the unframed body (HTTP/2 DATA frames).
    pub raw: Vec<Piece>,
    /// Pieces of the HTTP/1 framed body: one chunk frame per piece when chunked; the last
    /// piece holds the end of the body (the last chunk and trailers, or nothing before a
    /// close) at the time the recorded body ended.
    pub framed: Vec<Piece>,
    /// When the recorded body ended, after the first byte.
    pub end: Duration,
    /// The answer is a Server-Sent Events stream (`text/event-stream`): paced by default.
    pub event_stream: bool,
}

/// The pieces of `body` with their times after the answer's first byte, and when the body
/// ended; `None` for a body without a chunk table (it arrived at once). Times count from the
/// recorded first response byte (the first chunk, when that was not recorded).
pub(crate) fn schedule(body: &Body, timings: &Timings) -> Option<(Vec<Piece>, Duration)> {
    let first = body.chunks.first()?;
    let base = timings.response_first_byte_ns.unwrap_or(first.offset_ns);
    let since = |ns: u64| Duration::from_nanos(ns.saturating_sub(base));
    let mut pieces = Vec::with_capacity(body.chunks.len());
    let mut start = 0;
    for (offset, data) in body.timed_pieces(first.offset_ns) {
        pieces.push(Piece {
            after: since(offset),
            range: start..start + data.len(),
        });
        start += data.len();
    }
    let last = pieces.last().map_or(Duration::ZERO, |p| p.after);
    let end = timings.response_end_ns.map_or(last, since).max(last);
    Some((pieces, end))
}

/// Whether the end of a body at `end` is a moment of its own rather than part of the last
/// piece (sent with it when they were recorded within the coalescing window).
pub(crate) fn ends_apart(last: Duration, end: Duration) -> bool {
    end.saturating_sub(last) >= Duration::from_nanos(BodyChunk::COALESCE_NS)
}

/// When a piece `after` the start is due at `scale`; very large products are capped (a
/// year) rather than overflowing.
fn due(start: Instant, after: Duration, scale: f64) -> Instant {
    const CAP: Duration = Duration::from_secs(365 * 24 * 3600);
    let scaled = Duration::try_from_secs_f64(after.as_secs_f64() * scale).unwrap_or(CAP);
    start + scaled.min(CAP)
}

/// Writes the `pieces` of `body` to `w`, each at its time (times `scale`) after now, flushing
/// each so that it leaves at once.
///
/// # Errors
/// The writer's error (typically the client went away).
pub(crate) async fn write<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    body: &[u8],
    pieces: &[Piece],
    scale: f64,
) -> std::io::Result<()> {
    let start = Instant::now();
    for p in pieces {
        tokio::time::sleep_until(due(start, p.after, scale)).await;
        if let Some(data) = body.get(p.range.clone()) {
            w.write_all(data).await?;
        }
        w.flush().await?;
    }
    Ok(())
}

/// `data` as an HTTP/2 body whose DATA frames leave at the times of `timed.raw` (times
/// `scale`) after now; `trailers` (or the end of the stream) follow at the recorded end.
pub(crate) fn h2_body(
    data: Bytes,
    timed: &TimedBody,
    scale: f64,
    trailers: Option<HeaderMap>,
) -> ReplayBody {
    let pieces = timed.raw.clone();
    let end = timed.end;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    tokio::spawn(async move {
        let start = Instant::now();
        for p in pieces {
            tokio::time::sleep_until(due(start, p.after, scale)).await;
            if p.range.end > data.len() || p.range.is_empty() {
                continue;
            }
            if tx.send(Ok(Frame::data(data.slice(p.range)))).await.is_err() {
                // The client reset the stream or left.
                return;
            }
        }
        tokio::time::sleep_until(due(start, end, scale)).await;
        if let Some(t) = trailers {
            let _ = tx.send(Ok(Frame::trailers(t))).await;
        }
    });
    UnsyncBoxBody::new(ChannelBody { rx })
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sse_body() -> (Body, Timings) {
        let mut body = Body::full(&b"aaabbbcc"[..]);
        body.chunks = [(10, 3), (210, 3), (410, 2)]
            .map(|(at, len)| BodyChunk {
                offset_ns: at * 1_000_000,
                len,
            })
            .to_vec();
        let timings = Timings {
            request_end_ns: Some(1_000_000),
            response_first_byte_ns: Some(10_000_000),
            response_end_ns: Some(500_000_000),
        };
        (body, timings)
    }

    #[test]
    fn the_schedule_counts_from_the_first_response_byte() {
        let (body, timings) = sse_body();
        let (pieces, end) = schedule(&body, &timings).unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece {
                    after: ms(0),
                    range: 0..3
                },
                Piece {
                    after: ms(200),
                    range: 3..6
                },
                Piece {
                    after: ms(400),
                    range: 6..8
                },
            ]
        );
        assert_eq!(end, ms(490));
        assert!(schedule(&Body::full(&b"x"[..]), &timings).is_none());
        assert!(ends_apart(ms(400), ms(490)) && !ends_apart(ms(400), ms(400)));
    }

    /// A writer that notes the (virtual) time of every write.
    struct Stamped {
        start: Instant,
        writes: Vec<(Duration, Vec<u8>)>,
    }

    impl AsyncWrite for Stamped {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let at = self.start.elapsed();
            self.writes.push((at, buf.to_vec()));
            std::task::Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn http1_pieces_leave_at_their_offsets_scaled() {
        let (body, timings) = sse_body();
        let (pieces, _) = schedule(&body, &timings).unwrap();
        for (scale, want) in [(1.0, [0, 200, 400]), (0.5, [0, 100, 200])] {
            let mut w = Stamped {
                start: Instant::now(),
                writes: Vec::new(),
            };
            write(&mut w, &body.data, &pieces, scale).await.unwrap();
            let got: Vec<(Duration, Vec<u8>)> = w.writes;
            assert_eq!(
                got,
                vec![
                    (ms(want[0]), b"aaa".to_vec()),
                    (ms(want[1]), b"bbb".to_vec()),
                    (ms(want[2]), b"cc".to_vec()),
                ]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_leave_at_their_offsets_then_the_trailers_at_the_end() {
        let (body, timings) = sse_body();
        let (raw, end) = schedule(&body, &timings).unwrap();
        let timed = TimedBody {
            framed: raw.clone(),
            raw,
            end,
            event_stream: true,
        };
        let mut trailers = HeaderMap::new();
        trailers.insert("x-done", http::HeaderValue::from_static("1"));
        let start = Instant::now();
        let mut b = h2_body(body.data.clone(), &timed, 1.0, Some(trailers));
        let mut seen = Vec::new();
        while let Some(frame) = b.frame().await {
            let frame = frame.unwrap();
            let what = match frame.into_data() {
                Ok(d) => String::from_utf8_lossy(&d).into_owned(),
                Err(f) => format!("trailers {}", f.into_trailers().map_or(0, |t| t.len())),
            };
            seen.push((start.elapsed(), what));
        }
        assert_eq!(
            seen,
            vec![
                (ms(0), "aaa".into()),
                (ms(200), "bbb".into()),
                (ms(400), "cc".into()),
                (ms(490), "trailers 1".into()),
            ]
        );
    }
}
