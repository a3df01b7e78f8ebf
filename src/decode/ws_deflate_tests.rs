use super::*;
use proptest::prelude::*;

const LIMIT: usize = 1 << 20;

fn inflate_all(inf: &mut Inflater, frames: &[(&[u8], bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (payload, fin) in frames {
        out.extend(inf.frame(payload, *fin, LIMIT).unwrap());
    }
    out
}

#[test]
fn rfc_7692_examples_inflate() {
    // §7.2.3.1: "Hello" in one compressed frame, and split over two fragments.
    let hello: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(
        inflate_all(&mut Inflater::new(), &[(hello, true)]),
        b"Hello"
    );
    assert_eq!(
        inflate_all(
            &mut Inflater::new(),
            &[(&hello[..3], false), (&hello[3..], true)]
        ),
        b"Hello"
    );
    // §7.2.3.2: the second "Hello" references the first through the shared window.
    let mut inf = Inflater::new();
    assert_eq!(inflate_all(&mut inf, &[(hello, true)]), b"Hello");
    assert_eq!(
        inflate_all(&mut inf, &[(&[0xf2, 0x00, 0x11, 0x00, 0x00], true)]),
        b"Hello"
    );
    // §7.2.3.3: a stored block.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(
        inflate_all(&mut Inflater::new(), &[(&stored, true)]),
        b"Hello"
    );
    // §7.2.3.4: a block with BFINAL set, twice in a row (each message its own stream).
    let last = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
    let mut inf = Inflater::new();
    assert_eq!(inflate_all(&mut inf, &[(&last, true)]), b"Hello");
    assert_eq!(inflate_all(&mut inf, &[(&last, true)]), b"Hello");
    assert_eq!(inflate_all(&mut inf, &[(hello, true)]), b"Hello");
}

#[test]
fn deflated_messages_round_trip_with_and_without_context_takeover() {
    let text = b"the quick brown fox jumps over the lazy dog, again and again and again".repeat(20);
    for no_context in [false, true] {
        let mut def = Deflater::new(no_context, 15);
        let mut inf = Inflater::new();
        for i in 0..3 {
            let wire = def.frame(&text, true).unwrap();
            assert!(wire.len() < text.len() / 4, "compressed: {}", wire.len());
            assert_eq!(inf.frame(&wire, true, LIMIT).unwrap(), text, "message {i}");
            if no_context {
                // Each message stands alone: a fresh inflater reads it.
                let mut fresh = Inflater::new();
                assert_eq!(fresh.frame(&wire, true, LIMIT).unwrap(), text);
            }
        }
    }
    // With context takeover the repeat is a few bytes of back-reference.
    let mut def = Deflater::new(false, 15);
    let first = def.frame(&text, true).unwrap();
    let second = def.frame(&text, true).unwrap();
    assert!(
        second.len() < first.len() / 2,
        "{} vs {}",
        second.len(),
        first.len()
    );
}

#[test]
fn fragments_and_empty_messages_round_trip() {
    let mut def = Deflater::new(false, 15);
    let mut inf = Inflater::new();
    let parts: [&[u8]; 3] = [b"part1-", b"", b"part2-part3"];
    let mut got = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let wire = def.frame(p, i == 2).unwrap();
        got.extend(inf.frame(&wire, i == 2, LIMIT).unwrap());
    }
    assert_eq!(got, b"part1-part2-part3");
    let empty = def.frame(b"", true).unwrap();
    assert_eq!(inf.frame(&empty, true, LIMIT).unwrap(), b"");
    assert_eq!(
        inf.frame(&def.frame(b"after", true).unwrap(), true, LIMIT)
            .unwrap(),
        b"after"
    );
}

#[test]
fn small_windows_store_what_does_not_fit() {
    // A 2^9 window: a short message is compressed, a long one goes in stored blocks, and
    // either reads with a fresh inflater (no context across messages).
    let mut def = Deflater::new(false, 9);
    let short = b"abcabcabcabc".repeat(10);
    let long = b"xyzxyzxyz".repeat(200);
    let w = def.frame(&short, true).unwrap();
    assert!(w.len() < short.len());
    assert_eq!(Inflater::new().frame(&w, true, LIMIT).unwrap(), short);
    let w = def.frame(&long, true).unwrap();
    assert!(w.len() > long.len(), "stored: {}", w.len());
    assert_eq!(Inflater::new().frame(&w, true, LIMIT).unwrap(), long);
    // A fragmented message that outgrows the window midway.
    let mut inf = Inflater::new();
    let a = def.frame(&short, false).unwrap();
    let b = def.frame(&long, true).unwrap();
    let mut got = inf.frame(&a, false, LIMIT).unwrap();
    got.extend(inf.frame(&b, true, LIMIT).unwrap());
    assert_eq!(got, [short.clone(), long.clone()].concat());
    // Stored blocks over 64 KiB split into several blocks.
    let big = vec![7u8; 200_000];
    let mut def = Deflater::new(true, 10);
    let w = def.frame(&big, true).unwrap();
    assert_eq!(Inflater::new().frame(&w, true, LIMIT).unwrap(), big);
}

#[test]
fn a_decompression_bomb_is_an_error_not_an_allocation() {
    let mut def = Deflater::new(false, 15);
    let bomb = def.frame(&vec![0u8; 8 << 20], true).unwrap();
    assert!(bomb.len() < 64 << 10);
    let mut inf = Inflater::new();
    assert_eq!(
        inf.frame(&bomb, true, 1 << 20),
        Err(Error::TooLarge { limit: 1 << 20 })
    );
    assert!(inf.frame(b"", true, LIMIT).is_err(), "stays failed");
}

#[test]
fn corrupt_data_is_an_error() {
    let mut inf = Inflater::new();
    // BTYPE 11 is reserved (RFC 1951 §3.2.3).
    assert!(matches!(
        inf.frame(&[0xff, 0xff, 0xff], true, LIMIT),
        Err(Error::Corrupt(_))
    ));
    // A stored block whose NLEN is not the complement of LEN.
    let mut inf = Inflater::new();
    assert!(inf
        .frame(&[0x00, 0x05, 0x00, 0x00, 0x00, b'h'], true, LIMIT)
        .is_err());
}

#[test]
fn extension_elements_and_parameters() {
    assert_eq!(
        elements(b"permessage-deflate; client_max_window_bits, x-foo; a=\"1,2\" ,, y"),
        vec![
            &b"permessage-deflate; client_max_window_bits"[..],
            b"x-foo; a=\"1,2\"",
            b"y"
        ]
    );
    assert_eq!(
        element_name(b" permessage-deflate ;x"),
        b"permessage-deflate"
    );
    assert_eq!(
        parse_params(b"permessage-deflate; client_max_window_bits"),
        Some(Params {
            client_max_window_bits: Some(None),
            ..Params::default()
        })
    );
    assert_eq!(
        parse_params(
            b"Permessage-Deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=\"10\"; client_max_window_bits=15"
        ),
        Some(Params {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(10),
            client_max_window_bits: Some(Some(15)),
        })
    );
    for bad in [
        &b"permessage-deflate; foo"[..],
        b"permessage-deflate; server_max_window_bits",
        b"permessage-deflate; server_max_window_bits=7",
        b"permessage-deflate; server_max_window_bits=16",
        b"permessage-deflate; server_max_window_bits=08",
        b"permessage-deflate; server_no_context_takeover=1",
        b"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        b"x-webkit-deflate-frame",
    ] {
        assert_eq!(parse_params(bad), None, "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn the_server_accepts_the_first_acceptable_offer() {
    let v = |s: &'static str| vec![s.as_bytes()];
    // What browsers and Python's websockets offer.
    let a = accept(v("permessage-deflate; client_max_window_bits")).unwrap();
    assert_eq!(a.response, "permessage-deflate");
    assert!(!a.server_no_context_takeover);
    assert_eq!(a.server_window_bits, 15);
    // An offer to decline, then a fallback; other extensions are not ours.
    let a = accept(v("x-webkit-deflate-frame, permessage-deflate; bogus, permessage-deflate; server_no_context_takeover")).unwrap();
    assert_eq!(a.response, "permessage-deflate; server_no_context_takeover");
    assert!(a.server_no_context_takeover);
    // A narrow server window also drops the context between messages.
    let a = accept([
        &b"x-foo"[..],
        b"permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
    ])
    .unwrap();
    assert_eq!(
        a.response,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_no_context_takeover"
    );
    assert_eq!(
        (a.server_no_context_takeover, a.server_window_bits),
        (true, 10)
    );
    assert_eq!(accept(v("permessage-deflate; bogus")), None);
    assert_eq!(accept(Vec::<&[u8]>::new()), None);
    assert!(negotiated(v(
        "permessage-deflate; server_max_window_bits=12"
    )));
    assert!(!negotiated(v("x-foo")));
}

proptest! {
    #[test]
    fn any_messages_and_cuts_round_trip(
        messages in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3000), 1..6),
        no_context in any::<bool>(),
        bits in 8u8..=15,
        cut in any::<prop::sample::Index>(),
    ) {
        let mut def = Deflater::new(no_context, bits);
        let mut inf = Inflater::new();
        for m in &messages {
            // Each message in two fragments, cut anywhere.
            let at = cut.index(m.len() + 1);
            let a = def.frame(&m[..at], false).unwrap();
            let b = def.frame(&m[at..], true).unwrap();
            let mut got = inf.frame(&a, false, LIMIT).unwrap();
            got.extend(inf.frame(&b, true, LIMIT).unwrap());
            prop_assert_eq!(&got, m);
        }
    }

    #[test]
    fn garbage_never_panics(frames in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..200), any::<bool>()), 0..5)) {
        let mut inf = Inflater::new();
        for (p, fin) in &frames {
            let _ = inf.frame(p, *fin, 4096);
        }
    }
}
