//! Tests of `h2`, in their own file so that the module holds only its logic.

use super::*;
use proptest::prelude::*;

fn conversation() -> Vec<u8> {
    let mut enc = loona_hpack::Encoder::new();
    let mut out = PREFACE.to_vec();
    encode_frame(&mut out, 4, 0, 0, &[]); // SETTINGS
    let block = encode_headers(
        &mut enc,
        &[
            (b":method", b"POST"),
            (b":path", b"/a/b"),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b"x-long", &[b'v'; 300]),
        ],
    );
    // HEADERS split with a CONTINUATION, padded HEADERS.
    let (first, rest) = block.split_at(block.len() / 2);
    let mut padded = vec![3u8];
    padded.extend_from_slice(first);
    padded.extend_from_slice(&[0, 0, 0]);
    encode_frame(&mut out, kind::HEADERS, PADDED, 1, &padded);
    encode_frame(&mut out, kind::CONTINUATION, END_HEADERS, 1, rest);
    encode_frame(
        &mut out,
        kind::DATA,
        PADDED | END_STREAM,
        1,
        &[2, b'h', b'i', 0, 0],
    );
    // Second request reuses the dynamic table.
    let block = encode_headers(
        &mut enc,
        &[
            (b":method", b"POST"),
            (b":path", b"/a/b"),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b"x-long", &[b'v'; 300]),
        ],
    );
    encode_frame(&mut out, kind::HEADERS, END_HEADERS | END_STREAM, 3, &block);
    encode_frame(&mut out, kind::RST_STREAM, 0, 3, &8u32.to_be_bytes());
    out
}

fn events(chunks: &[&[u8]]) -> Vec<Event> {
    let mut d = Decoder::new(true);
    let mut ev = Vec::new();
    for c in chunks {
        d.feed(c).expect("valid frames");
        while let Some(e) = d.poll() {
            ev.push(e);
        }
    }
    ev
}

#[test]
fn continuation_padding_and_dynamic_table() {
    let bytes = conversation();
    let ev = events(&[&bytes]);
    assert_eq!(ev.len(), 4, "{ev:?}");
    let Event::Headers {
        stream: 1,
        headers,
        end_stream: false,
        damaged: false,
    } = &ev[0]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(headers[1], Header::new(":path", "/a/b"));
    assert_eq!(headers[4].value.len(), 300);
    assert_eq!(
        ev[1],
        Event::Data {
            stream: 1,
            data: Bytes::from_static(b"hi"),
            end_stream: true
        }
    );
    let Event::Headers {
        stream: 3,
        headers: h2,
        end_stream: true,
        damaged: false,
    } = &ev[2]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(h2, headers);
    assert_eq!(ev[3], Event::Reset { stream: 3, code: 8 });
}

#[test]
fn mid_connection_start_flags_damaged_headers() {
    let bytes = conversation();
    // Start at the second HEADERS frame: its indexed fields refer to a table never seen.
    let pos = bytes.len() - (9 + 4) - 9 - {
        let mut enc = loona_hpack::Encoder::new();
        let _ = encode_headers(
            &mut enc,
            &[
                (b":method", b"POST"),
                (b":path", b"/a/b"),
                (b":scheme", b"http"),
                (b":authority", b"x"),
                (b"x-long", &[b'v'; 300]),
            ],
        );
        encode_headers(
            &mut enc,
            &[
                (b":method", b"POST"),
                (b":path", b"/a/b"),
                (b":scheme", b"http"),
                (b":authority", b"x"),
                (b"x-long", &[b'v'; 300]),
            ],
        )
        .len()
    };
    let ev = events(&[&bytes[pos..]]);
    assert!(
        matches!(
            &ev[0],
            Event::Headers {
                stream: 3,
                damaged: true,
                ..
            }
        ),
        "{ev:?}"
    );
}

#[test]
fn after_a_hole_decoding_resumes_at_a_frame_boundary() {
    let mut enc = loona_hpack::Encoder::new();
    let mut frames = Vec::new();
    encode_frame(&mut frames, kind::DATA, 0, 1, &[7u8; 3000]);
    let data_end = frames.len();
    let block = encode_headers(&mut enc, &[(b":status", b"200")]);
    encode_frame(&mut frames, kind::HEADERS, END_HEADERS, 3, &block);
    encode_frame(&mut frames, kind::DATA, END_STREAM, 3, b"three");
    encode_frame(&mut frames, kind::DATA, END_STREAM, 5, b"five");
    let mut d = Decoder::new(false);
    // The hole took the DATA frame's header and some of its payload.
    d.feed(&frames[..0]).unwrap();
    d.gap();
    let after = &frames[1200..];
    for piece in after.chunks(700) {
        d.feed(piece).unwrap();
    }
    let mut events = Vec::new();
    while let Some(ev) = d.poll() {
        events.push(ev);
    }
    assert!(d.hpack_unsure());
    assert!(
        matches!(
            &events[0],
            Event::Headers {
                stream: 3,
                damaged: false,
                ..
            }
        ),
        "{events:?}"
    );
    assert_eq!(
        events[1..],
        [
            Event::Data {
                stream: 3,
                data: Bytes::from_static(b"three"),
                end_stream: true
            },
            Event::Data {
                stream: 5,
                data: Bytes::from_static(b"five"),
                end_stream: true
            },
        ]
    );
    assert_eq!(frame_boundary(&frames[data_end - 10..]), Boundary::At(10));
    assert_eq!(frame_boundary(&[0xff; 100]), Boundary::NeedMore(92));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut d = Decoder::new(false);
    assert!(d.feed(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    assert!(d.is_failed());
}

proptest! {
    #[test]
    fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..2000, 0..10)) {
        let bytes = conversation();
        let whole = events(&[&bytes]);
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();
        let chunks: Vec<&[u8]> = points.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        prop_assert_eq!(events(&chunks), whole);
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut d = Decoder::new(true);
        let _ = d.feed(&data);
        while d.poll().is_some() {}
    }
}
