//! Tests of `pcap`, in their own file so that the module holds only its logic.

use super::*;
use proptest::prelude::*;

#[test]
fn pcap_round_trip_and_truncation() {
    let mut w = PcapWriter::new(Vec::new(), 1).expect("vec");
    w.packet(1_500_000_123_000, b"abc").expect("vec");
    w.packet(1_500_000_124_000, b"defg").expect("vec");
    let bytes = w.into_inner();
    let mut r = Reader::new(&bytes[..]).expect("pcap");
    let p = r.next_packet().expect("read").expect("packet");
    assert_eq!(
        (p.ts_ns, p.linktype, p.data),
        (1_500_000_123_000, 1, &b"abc"[..])
    );
    assert!(r.next_packet().expect("read").is_some());
    assert!(r.next_packet().expect("read").is_none());
    assert!(!r.truncated);
    let mut r = Reader::new(&bytes[..bytes.len() - 2]).expect("pcap");
    assert!(r.next_packet().expect("read").is_some());
    assert!(r.next_packet().expect("read").is_none());
    assert!(r.truncated);
}

#[test]
fn random_bytes_are_not_a_capture() {
    assert!(matches!(
        Reader::new(&b"hello world, not a pcap"[..]),
        Err(Error::NotACapture(_))
    ));
    assert!(matches!(Reader::new(&b""[..]), Err(Error::NotACapture(_))));
}

/// A little-endian pcapng block of `kind` around `body` (padded to 4 bytes).
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let padded = (body.len() + 3) & !3;
    let total = (12 + padded) as u32;
    let mut b = kind.to_le_bytes().to_vec();
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(body);
    b.resize(8 + padded, 0);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

fn secrets_block(kind: u32, secrets: &[u8], declared: u32) -> Vec<u8> {
    let mut body = kind.to_le_bytes().to_vec();
    body.extend_from_slice(&declared.to_le_bytes());
    body.extend_from_slice(secrets);
    block(DECRYPTION_SECRETS, &body)
}

#[test]
fn pcapng_decryption_secrets_blocks_are_collected() {
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut file = block(0x0a0d_0d0a, &shb);
    file.extend(block(1, &[1, 0, 0, 0, 0, 0, 4, 0]));
    let keys = b"CLIENT_RANDOM 00 11\n";
    file.extend(secrets_block(TLS_KEY_LOG, keys, keys.len() as u32));
    file.extend(secrets_block(0x5747_4b4c, b"wireguard", 9));
    // A TLS key log block whose declared length runs past the block: malformed.
    file.extend(secrets_block(TLS_KEY_LOG, b"short", 4000));
    let mut epb = vec![0u8; 20];
    epb[12] = 3;
    epb[16] = 3;
    epb.extend_from_slice(b"abc");
    file.extend(block(6, &epb));
    // A block cut short by the end of the file.
    file.extend(&secrets_block(TLS_KEY_LOG, keys, keys.len() as u32)[..10]);
    let mut r = Reader::new(&file[..]).expect("pcapng");
    assert_eq!(r.next_packet().expect("read").expect("packet").data, b"abc");
    assert!(r.has_secrets());
    assert_eq!(r.take_secrets(), vec![keys.to_vec()]);
    assert!(r.take_secrets().is_empty());
    assert!(r.next_packet().expect("read").is_none());
    assert!(r.truncated);
    assert_eq!((r.secrets_blocks, r.other_secrets_blocks), (1, 2));
}

proptest! {
    #[test]
    fn any_bytes_after_a_magic_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2000), ng in any::<bool>()) {
        let mut bytes = if ng { vec![0x0a, 0x0d, 0x0d, 0x0a] } else { vec![0xd4, 0xc3, 0xb2, 0xa1] };
        bytes.extend_from_slice(&data);
        if let Ok(mut r) = Reader::new(&bytes[..]) {
            while let Ok(Some(_)) = r.next_packet() {}
        }
    }
}
