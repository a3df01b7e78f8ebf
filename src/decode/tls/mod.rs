//! Passive TLS decryption from key logs: the record layer, the handshake fields an observer
//! needs, and the key schedules of TLS 1.3 and TLS 1.2, all sans-IO.
//!
//! TLS libraries (rustls included) terminate connections: they hold the ephemeral keys and
//! drive both ends. None decrypts a connection it only watched, from secrets logged by one of
//! its endpoints (`SSLKEYLOGFILE`), so the framing, the schedules and the per-record nonces
//! and additional data are implemented here; only the AEAD, HKDF and HMAC primitives are
//! `ring`'s.
//!
//! Supported: TLS 1.3 with the three RFC 8446 AEAD suites, TLS 1.2 with the AES-GCM
//! (RFC 5288) and ChaCha20-Poly1305 (RFC 7905) suites of any key exchange. Not: CBC suites,
//! TLS 1.3 0-RTT early data, SSL 3 / TLS 1.0 / 1.1.
//!
//! Files: `handshake` (framing and hellos), `schedule` (key derivation), `cipher` (record
//! protection), `keylog` (the NSS key log format), `decryptor` (one connection's state).

mod cipher;
mod decryptor;
mod handshake;
mod keylog;
mod schedule;

pub(crate) use decryptor::{Decryptor, Plain, Status};
pub(crate) use handshake::starts_hello;
pub use keylog::KeyLog;

#[cfg(test)]
mod tests;
