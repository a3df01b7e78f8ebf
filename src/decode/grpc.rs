//! gRPC length-prefixed message framing (gRPC over HTTP/2 spec, "Length-Prefixed-Message").
//!
//! A gRPC body is a sequence of messages, each `compressed flag (1 byte) | length (u32 BE) |
//! bytes`. HTTP/2 DATA frames cut this sequence anywhere, so the [`Decoder`] buffers only the
//! message being assembled and hands out whole messages. It never panics on hostile input; a
//! message larger than the configured limit is an error rather than an allocation.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

/// Largest message accepted by default (gRPC's own default receive limit is 4 MiB; recordings
/// often carry larger ones, so mf is more lenient).
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// One length-prefixed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The compressed-flag byte was 1: `data` is compressed with the `grpc-encoding` codec.
    pub compressed: bool,
    pub data: Bytes,
}

/// Why the bytes are not a gRPC message stream.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("grpc message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: usize },
    #[error("invalid grpc compressed flag {0:#04x} (expected 0 or 1)")]
    BadFlag(u8),
    #[error("grpc stream ended with {0} bytes of an incomplete message")]
    Incomplete(usize),
}

/// Reassembles messages from arbitrary chunks of one direction of one gRPC stream.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    ready: VecDeque<Message>,
    max_message: usize,
    failed: Option<Error>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with [`DEFAULT_MAX_MESSAGE`].
    pub fn new() -> Self {
        Decoder {
            buf: BytesMut::new(),
            ready: VecDeque::new(),
            max_message: DEFAULT_MAX_MESSAGE,
            failed: None,
        }
    }

    /// Sets the largest message accepted.
    pub fn with_max_message(mut self, max: usize) -> Self {
        self.max_message = max;
        self
    }

    /// Adds bytes; complete messages become available through [`Decoder::poll`].
    ///
    /// # Errors
    /// A bad flag byte or an oversized message. After an error the decoder stays failed.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(data);
        while self.buf.len() >= 5 {
            let flag = self.buf[0];
            if flag > 1 {
                return Err(self.fail(Error::BadFlag(flag)));
            }
            let len =
                u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as u64;
            if len > self.max_message as u64 {
                return Err(self.fail(Error::TooLarge {
                    size: len,
                    limit: self.max_message,
                }));
            }
            let total = 5 + len as usize;
            if self.buf.len() < total {
                // Reserve once so a large message is not reallocated for every DATA frame.
                self.buf.reserve(total - self.buf.len());
                break;
            }
            self.buf.advance(5);
            let data = self.buf.split_to(len as usize).freeze();
            self.ready.push_back(Message {
                compressed: flag == 1,
                data,
            });
        }
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Error {
        self.failed = Some(e.clone());
        e
    }

    /// The next complete message, if any.
    pub fn poll(&mut self) -> Option<Message> {
        self.ready.pop_front()
    }

    /// Bytes of a message still being assembled.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Call at end of stream.
    ///
    /// # Errors
    /// Bytes of an unfinished message remain.
    pub fn finish(&self) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Incomplete(self.buf.len()))
        }
    }
}

/// Appends one length-prefixed message to `out`.
pub fn encode(out: &mut BytesMut, compressed: bool, data: &[u8]) {
    out.reserve(5 + data.len());
    out.extend_from_slice(&[u8::from(compressed)]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// Splits `body` into messages; convenient when a whole body is at hand (store, replay).
///
/// # Errors
/// Same as [`Decoder::feed`] and [`Decoder::finish`].
pub fn decode_all(body: &[u8]) -> Result<Vec<Message>, Error> {
    let mut d = Decoder::new();
    d.feed(body)?;
    d.finish()?;
    Ok(std::iter::from_fn(|| d.poll()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(msgs: &[(bool, Vec<u8>)]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for (c, d) in msgs {
            encode(&mut out, *c, d);
        }
        out.to_vec()
    }

    #[test]
    fn whole_and_empty_messages() {
        let w = wire(&[
            (false, b"hello".to_vec()),
            (true, vec![]),
            (false, vec![1, 2, 3]),
        ]);
        let got = decode_all(&w).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            Message {
                compressed: false,
                data: Bytes::from_static(b"hello")
            }
        );
        assert!(got[1].compressed && got[1].data.is_empty());
        assert_eq!(&got[2].data[..], &[1, 2, 3]);
    }

    #[test]
    fn partial_prefix_waits() {
        let mut d = Decoder::new();
        d.feed(&[0, 0, 0]).unwrap();
        assert!(d.poll().is_none());
        assert_eq!(d.finish(), Err(Error::Incomplete(3)));
        d.feed(&[0, 2, b'o']).unwrap();
        assert!(d.poll().is_none());
        d.feed(b"k").unwrap();
        assert_eq!(d.poll().map(|m| m.data), Some(Bytes::from_static(b"ok")));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn bad_flag_and_oversize_are_errors() {
        let mut d = Decoder::new();
        assert_eq!(d.feed(&[7, 0, 0, 0, 0]), Err(Error::BadFlag(7)));
        assert_eq!(d.feed(&[0]), Err(Error::BadFlag(7)), "stays failed");
        let mut d = Decoder::new().with_max_message(10);
        assert_eq!(
            d.feed(&[0, 0, 0, 0, 11]),
            Err(Error::TooLarge {
                size: 11,
                limit: 10
            })
        );
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_messages(
            msgs in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let w = wire(&msgs);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(w.len() + 1)).collect();
            points.sort_unstable();
            let mut d = Decoder::new();
            let mut got = Vec::new();
            let mut last = 0;
            for p in points.into_iter().chain([w.len()]) {
                d.feed(&w[last..p]).unwrap();
                last = p;
                while let Some(m) = d.poll() { got.push((m.compressed, m.data.to_vec())); }
            }
            prop_assert_eq!(d.finish(), Ok(()));
            prop_assert_eq!(got, msgs);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = Decoder::new().with_max_message(1000);
            let _ = d.feed(&bytes);
            while d.poll().is_some() {}
        }
    }
}
