//! The record protection of one direction: per-record nonces and additional data for
//! TLS 1.3 (RFC 8446 §5.2, §5.3) and TLS 1.2 AEAD suites (RFC 5246 §6.2.3.3, RFC 5288 §3,
//! RFC 7905 §2). The AEAD itself is `ring`'s.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};

use super::schedule::{Suite, TrafficKeys};

/// Bytes of an AEAD tag (all supported suites).
const TAG_LEN: usize = 16;

/// Why a record could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    /// Shorter than its nonce and tag.
    #[error("record too short for its AEAD")]
    Short,
    /// The tag did not verify: wrong keys, or bytes altered.
    #[error("record failed authentication")]
    Auth,
    /// TLS 1.3 inner plaintext of padding only (RFC 8446 §5.4).
    #[error("record without a content type")]
    NoContentType,
}

/// Decrypts the records of one direction in order.
pub(crate) struct RecordCipher {
    key: LessSafeKey,
    iv: [u8; 12],
    iv_len: usize,
    seq: u64,
    tls13: bool,
    explicit_nonce: bool,
}

impl RecordCipher {
    /// A cipher at sequence number 0; `None` when the key has the wrong length.
    pub(crate) fn new(suite: Suite, keys: &TrafficKeys, tls13: bool) -> Option<Self> {
        let key = UnboundKey::new(suite.aead.ring(), &keys.key).ok()?;
        let mut iv = [0u8; 12];
        let iv_len = keys.iv.len().min(12);
        iv[..iv_len].copy_from_slice(&keys.iv[..iv_len]);
        Some(RecordCipher {
            key: LessSafeKey::new(key),
            iv,
            iv_len,
            seq: 0,
            tls13,
            explicit_nonce: suite.explicit_nonce,
        })
    }

    /// Opens the record with header `header` (type, version, length) and body `fragment`:
    /// the content type and the plaintext. The sequence number advances either way, as the
    /// sender's did.
    pub(crate) fn open(
        &mut self,
        header: [u8; 5],
        fragment: &[u8],
    ) -> Result<(u8, Vec<u8>), OpenError> {
        let seq = self.seq;
        self.seq += 1;
        let explicit = if self.explicit_nonce { 8 } else { 0 };
        if fragment.len() < explicit + TAG_LEN {
            return Err(OpenError::Short);
        }
        let mut nonce = self.iv;
        if self.explicit_nonce {
            // RFC 5288 §3: salt (the 4-byte write IV) then the record's explicit nonce.
            debug_assert_eq!(self.iv_len, 4);
            nonce[4..].copy_from_slice(&fragment[..8]);
        } else {
            // RFC 8446 §5.3 and RFC 7905 §2: the sequence number, left-padded, XOR the IV.
            for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                *n ^= s;
            }
        }
        let aad: Vec<u8> = if self.tls13 {
            // RFC 8446 §5.2: the additional data is the record header itself.
            header.to_vec()
        } else {
            // RFC 5246 §6.2.3.3: seq_num + type + version + length (of the plaintext).
            let plain_len = (fragment.len() - explicit - TAG_LEN) as u16;
            let mut a = Vec::with_capacity(13);
            a.extend_from_slice(&seq.to_be_bytes());
            a.extend_from_slice(&header[..3]);
            a.extend_from_slice(&plain_len.to_be_bytes());
            a
        };
        let mut buf = fragment[explicit..].to_vec();
        let plain_len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buf,
            )
            .map_err(|_| OpenError::Auth)?
            .len();
        buf.truncate(plain_len);
        if !self.tls13 {
            return Ok((header[0], buf));
        }
        // RFC 8446 §5.2: TLSInnerPlaintext = content, type, zero padding.
        let Some(end) = buf.iter().rposition(|b| *b != 0) else {
            return Err(OpenError::NoContentType);
        };
        let kind = buf[end];
        buf.truncate(end);
        Ok((kind, buf))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Seals `plain` as record number `seq` the way a TLS sender would: the whole record,
    /// header included.
    pub(crate) fn seal(
        suite: Suite,
        keys: &TrafficKeys,
        tls13: bool,
        seq: u64,
        kind: u8,
        plain: &[u8],
    ) -> Vec<u8> {
        let key = LessSafeKey::new(UnboundKey::new(suite.aead.ring(), &keys.key).unwrap());
        let mut nonce = [0u8; 12];
        let mut explicit = Vec::new();
        if suite.explicit_nonce {
            nonce[..4].copy_from_slice(&keys.iv);
            explicit = (seq ^ 0x5a5a).to_be_bytes().to_vec();
            nonce[4..].copy_from_slice(&explicit);
        } else {
            nonce.copy_from_slice(&keys.iv);
            for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
                *n ^= s;
            }
        }
        let mut body = plain.to_vec();
        let outer = if tls13 {
            body.push(kind);
            body.extend_from_slice(&[0, 0, 0]); // padding
            23
        } else {
            kind
        };
        let total = explicit.len() + body.len() + TAG_LEN;
        let header = [outer, 3, 3, (total >> 8) as u8, total as u8];
        let aad = if tls13 {
            header.to_vec()
        } else {
            let mut a = seq.to_be_bytes().to_vec();
            a.extend_from_slice(&header[..3]);
            a.extend_from_slice(&(body.len() as u16).to_be_bytes());
            a
        };
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad[..]),
            &mut body,
        )
        .unwrap();
        let mut rec = header.to_vec();
        rec.extend_from_slice(&explicit);
        rec.extend_from_slice(&body);
        rec
    }

    fn keys(suite: Suite) -> TrafficKeys {
        TrafficKeys {
            key: (0..suite.aead.key_len() as u8).collect(),
            iv: (100..100 + suite.iv_len() as u8).collect(),
        }
    }

    #[test]
    fn every_suite_opens_what_a_sender_sealed_in_sequence() {
        for (id, tls13) in [
            (0x1301, true),
            (0x1302, true),
            (0x1303, true),
            (0xC02F, false),
            (0xC030, false),
            (0xCCA8, false),
        ] {
            let suite = Suite::lookup(id, tls13).unwrap();
            let k = keys(suite);
            let mut c = RecordCipher::new(suite, &k, tls13).unwrap();
            for seq in 0..3u64 {
                let msg = format!("record {seq} of {id:04x}");
                let rec = seal(suite, &k, tls13, seq, 23, msg.as_bytes());
                let header: [u8; 5] = rec[..5].try_into().unwrap();
                let (kind, plain) = c.open(header, &rec[5..]).unwrap();
                assert_eq!((kind, plain), (23, msg.into_bytes()), "{id:04x} #{seq}");
            }
        }
    }

    #[test]
    fn altered_or_out_of_sequence_records_fail_authentication() {
        let suite = Suite::lookup(0x1301, true).unwrap();
        let k = keys(suite);
        let mut rec = seal(suite, &k, true, 0, 23, b"hello");
        let header: [u8; 5] = rec[..5].try_into().unwrap();
        let mut c = RecordCipher::new(suite, &k, true).unwrap();
        rec[7] ^= 1;
        assert_eq!(c.open(header, &rec[5..]), Err(OpenError::Auth));
        // The sequence moved on: the next record (sealed as #1) opens.
        let next = seal(suite, &k, true, 1, 23, b"world");
        assert_eq!(c.open(header_of(&next), &next[5..]).unwrap().1, b"world");
        assert_eq!(c.open(header, &[0; 4]), Err(OpenError::Short));
    }

    fn header_of(rec: &[u8]) -> [u8; 5] {
        rec[..5].try_into().unwrap()
    }
}
