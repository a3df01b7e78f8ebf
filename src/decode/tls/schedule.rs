//! Key derivation for a passive observer: from the secrets a key log names to the record
//! keys and IVs of each direction.
//!
//! TLS 1.3 (RFC 8446 §7.1, §7.3): traffic key = HKDF-Expand-Label(secret, "key", "", len),
//! IV = HKDF-Expand-Label(secret, "iv", "", 12); a KeyUpdate moves to
//! HKDF-Expand-Label(secret, "traffic upd", "", Hash.length) (§7.2).
//! TLS 1.2 (RFC 5246 §5, §6.3): key_block = PRF(master_secret, "key expansion",
//! server_random + client_random), cut into MAC keys (none for AEAD suites), write keys and
//! write IVs, client's first.

use ring::{hkdf, hmac};

/// The AEAD of a cipher suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Aead {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Aead {
    pub(crate) fn key_len(self) -> usize {
        match self {
            Aead::Aes128Gcm => 16,
            Aead::Aes256Gcm | Aead::Chacha20Poly1305 => 32,
        }
    }

    pub(crate) fn ring(self) -> &'static ring::aead::Algorithm {
        match self {
            Aead::Aes128Gcm => &ring::aead::AES_128_GCM,
            Aead::Aes256Gcm => &ring::aead::AES_256_GCM,
            Aead::Chacha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
        }
    }
}

/// The hash of a suite's HKDF (1.3) or PRF (1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
}

impl Hash {
    pub(crate) fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Hash::Sha256 => hkdf::HKDF_SHA256,
            Hash::Sha384 => hkdf::HKDF_SHA384,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha384 => hmac::HMAC_SHA384,
        }
    }
}

/// A cipher suite this decoder can decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Suite {
    pub id: u16,
    pub aead: Aead,
    pub hash: Hash,
    /// TLS 1.2 GCM (RFC 5288 §3): a 4-byte implicit salt plus an 8-byte explicit nonce
    /// carried in each record. TLS 1.2 ChaCha20 (RFC 7905 §2) and TLS 1.3: a 12-byte IV.
    pub explicit_nonce: bool,
}

impl Suite {
    /// The suite with IANA number `id` in TLS 1.3 (`tls13`) or 1.2; `None` for the suites
    /// not supported (CBC, RC4, CCM…).
    pub(crate) fn lookup(id: u16, tls13: bool) -> Option<Suite> {
        let (aead, hash) = if tls13 {
            match id {
                0x1301 => (Aead::Aes128Gcm, Hash::Sha256),
                0x1302 => (Aead::Aes256Gcm, Hash::Sha384),
                0x1303 => (Aead::Chacha20Poly1305, Hash::Sha256),
                _ => return None,
            }
        } else {
            match id {
                // (EC)DHE and RSA key exchange alike: the key log gives the master secret.
                0x009C | 0x009E | 0xC02B | 0xC02F => (Aead::Aes128Gcm, Hash::Sha256),
                0x009D | 0x009F | 0xC02C | 0xC030 => (Aead::Aes256Gcm, Hash::Sha384),
                0xCCA8..=0xCCAA => (Aead::Chacha20Poly1305, Hash::Sha256),
                _ => return None,
            }
        };
        Some(Suite {
            id,
            aead,
            hash,
            explicit_nonce: !tls13 && aead != Aead::Chacha20Poly1305,
        })
    }

    /// Bytes of the write IV the key block (1.2) or the schedule (1.3) provides.
    pub(crate) fn iv_len(self) -> usize {
        if self.explicit_nonce {
            4
        } else {
            12
        }
    }
}

/// A key and IV for one direction.
#[derive(Clone)]
pub(crate) struct TrafficKeys {
    pub key: Vec<u8>,
    pub iv: Vec<u8>,
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1): the `HkdfLabel` structure as the info of an
/// HKDF-Expand with `secret` as the PRK. `None` only for lengths HKDF cannot produce.
pub(crate) fn expand_label(
    hash: Hash,
    secret: &[u8],
    label: &[u8],
    context: &[u8],
    len: usize,
) -> Option<Vec<u8>> {
    let full_label_len = u8::try_from(6 + label.len()).ok()?;
    let context_len = u8::try_from(context.len()).ok()?;
    let out_len = u16::try_from(len).ok()?.to_be_bytes();
    let info: [&[u8]; 6] = [
        &out_len,
        &[full_label_len],
        b"tls13 ",
        label,
        &[context_len],
        context,
    ];
    let prk = hkdf::Prk::new_less_safe(hash.hkdf(), secret);
    let okm = prk.expand(&info, Len(len)).ok()?;
    let mut out = vec![0u8; len];
    okm.fill(&mut out).ok()?;
    Some(out)
}

/// The record key and IV of a TLS 1.3 traffic secret (RFC 8446 §7.3).
pub(crate) fn tls13_keys(suite: Suite, secret: &[u8]) -> Option<TrafficKeys> {
    Some(TrafficKeys {
        key: expand_label(suite.hash, secret, b"key", b"", suite.aead.key_len())?,
        iv: expand_label(suite.hash, secret, b"iv", b"", 12)?,
    })
}

/// The traffic secret after a KeyUpdate (RFC 8446 §7.2).
pub(crate) fn tls13_next_secret(hash: Hash, secret: &[u8]) -> Option<Vec<u8>> {
    expand_label(hash, secret, b"traffic upd", b"", hash.len())
}

/// The TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed) cut to `len` bytes.
pub(crate) fn prf(hash: Hash, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let key = hmac::Key::new(hash.hmac(), secret);
    let mut label_seed = Vec::with_capacity(label.len() + seed.len());
    label_seed.extend_from_slice(label);
    label_seed.extend_from_slice(seed);
    let mut out = Vec::with_capacity(len + hash.len());
    // A(1) = HMAC(secret, seed); A(i) = HMAC(secret, A(i-1)).
    let mut a = hmac::sign(&key, &label_seed);
    while out.len() < len {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        ctx.update(&label_seed);
        out.extend_from_slice(ctx.sign().as_ref());
        a = hmac::sign(&key, a.as_ref());
    }
    out.truncate(len);
    out
}

/// The client's and the server's write keys of a TLS 1.2 session (RFC 5246 §6.3).
pub(crate) fn tls12_keys(
    suite: Suite,
    master: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> [TrafficKeys; 2] {
    let (k, v) = (suite.aead.key_len(), suite.iv_len());
    let mut seed = Vec::with_capacity(64);
    seed.extend_from_slice(server_random);
    seed.extend_from_slice(client_random);
    // AEAD suites have no MAC keys (RFC 5246 §6.3 with mac_key_length 0).
    let block = prf(suite.hash, master, b"key expansion", &seed, 2 * k + 2 * v);
    let client = TrafficKeys {
        key: block[..k].to_vec(),
        iv: block[2 * k..2 * k + v].to_vec(),
    };
    let server = TrafficKeys {
        key: block[k..2 * k].to_vec(),
        iv: block[2 * k + v..].to_vec(),
    };
    [client, server]
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn tls13_handshake_keys_match_rfc8448_simple_1rtt() {
        // RFC 8448 §3, "{server} derive write traffic keys for handshake data".
        let secret = hex("b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4
                          e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38");
        let suite = Suite::lookup(0x1301, true).unwrap();
        let keys = tls13_keys(suite, &secret).unwrap();
        assert_eq!(
            keys.key,
            hex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc")
        );
        assert_eq!(keys.iv, hex("5d 31 3e b2 67 12 76 ee 13 00 0b 30"));
        // The same section's server "finished" key, another label over the same secret.
        assert_eq!(
            expand_label(Hash::Sha256, &secret, b"finished", b"", 32).unwrap(),
            hex("00 8d 3b 66 f8 16 ea 55 9f 96 b5 37 e8 85 c3 1f
                 c0 68 bf 49 2c 65 2f 01 f2 88 a1 d8 cd c1 9f c8")
        );
    }

    #[test]
    fn tls13_application_keys_match_rfc8448_simple_1rtt() {
        // RFC 8448 §3, "{server} derive write traffic keys for application data".
        let secret = hex("a1 1a f9 f0 55 31 f8 56 ad 47 11 6b 45 a9 50 32
                          82 04 b4 f4 4b fb 6b 3a 4b 4f 1f 3f cb 63 16 43");
        let keys = tls13_keys(Suite::lookup(0x1301, true).unwrap(), &secret).unwrap();
        assert_eq!(
            keys.key,
            hex("9f 02 28 3b 6c 9c 07 ef c2 6b b9 f2 ac 92 e3 56")
        );
        assert_eq!(keys.iv, hex("cf 78 2b 88 dd 83 54 9a ad f1 e9 84"));
    }

    #[test]
    fn suites_known_and_unknown() {
        assert_eq!(
            Suite::lookup(0x1303, true).unwrap().aead,
            Aead::Chacha20Poly1305
        );
        assert!(Suite::lookup(0xC02F, false).unwrap().explicit_nonce);
        assert!(!Suite::lookup(0xCCA8, false).unwrap().explicit_nonce);
        assert_eq!(Suite::lookup(0xC030, false).unwrap().hash, Hash::Sha384);
        assert!(
            Suite::lookup(0x002F, false).is_none(),
            "CBC is not supported"
        );
        assert!(Suite::lookup(0xC02F, true).is_none());
    }

    #[test]
    fn tls12_prf_sha256_known_answer() {
        // The widely used P_SHA256 test vector (secret, seed and label "test label", 100
        // bytes out), the same bytes `openssl kdf TLS1-PRF` gives.
        let out = prf(
            Hash::Sha256,
            &hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35"),
            b"test label",
            &hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c"),
            100,
        );
        let want = hex(
            "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4
             e6 1e db 5a 6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17
             ab fd 37 97 c0 56 4b ab 4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1
             22 ee 42 c5 a7 2e 5a 51 10 ff f7 01 87 34 7b 66",
        );
        assert_eq!(out, want);
    }

    #[test]
    fn tls12_key_block_is_cut_client_first() {
        let suite = Suite::lookup(0xC02F, false).unwrap();
        let (cr, sr) = ([1u8; 32], [2u8; 32]);
        let master = [3u8; 48];
        let [c, s] = tls12_keys(suite, &master, &cr, &sr);
        let mut seed = sr.to_vec();
        seed.extend_from_slice(&cr);
        let block = prf(Hash::Sha256, &master, b"key expansion", &seed, 40);
        assert_eq!(c.key, block[..16]);
        assert_eq!(s.key, block[16..32]);
        assert_eq!(c.iv, block[32..36]);
        assert_eq!(s.iv, block[36..40]);
    }
}
