//! The NSS key log format (`SSLKEYLOGFILE`, as written by curl, browsers, Python, Node, Go
//! and rustls' `KeyLogFile`): one `LABEL <client_random hex> <secret hex>` per line.
//!
//! The secrets are credentials: nothing here prints them (`Debug` shows counts only), and
//! nothing outside this module and the key schedule sees them.

use std::collections::HashMap;
use std::fmt;

/// The secrets logged for one session, found by its ClientHello random.
#[derive(Clone, Default)]
pub(crate) struct Secrets {
    /// TLS 1.2 `CLIENT_RANDOM`: the 48-byte master secret.
    pub master: Option<Vec<u8>>,
    pub client_handshake: Option<Vec<u8>>,
    pub server_handshake: Option<Vec<u8>>,
    pub client_traffic0: Option<Vec<u8>>,
    pub server_traffic0: Option<Vec<u8>>,
}

/// Secrets by client random, with counts of what could not be used.
#[derive(Clone, Default)]
pub struct KeyLog {
    sessions: HashMap<[u8; 32], Secrets>,
    /// Lines neither a known label with valid hex nor a comment or blank.
    pub garbage_lines: u64,
    /// Well-formed lines of a kind not used for decryption (`RSA`, early or exporter
    /// secrets).
    pub unused_lines: u64,
}

impl fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyLog")
            .field("sessions", &self.sessions.len())
            .field("garbage_lines", &self.garbage_lines)
            .field("unused_lines", &self.unused_lines)
            .finish()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

impl KeyLog {
    /// An empty key log.
    pub fn new() -> Self {
        KeyLog::default()
    }

    /// Sessions with at least one secret.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Adds every complete line of `text` (a trailing line without its end counts too:
    /// callers tailing a growing file hold such a line back).
    pub fn add(&mut self, text: &[u8]) {
        for line in text.split(|b| *b == b'\n') {
            self.add_line(line);
        }
    }

    fn add_line(&mut self, line: &[u8]) {
        let Ok(line) = std::str::from_utf8(line) else {
            self.garbage_lines += 1;
            return;
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        let mut fields = line.split_ascii_whitespace();
        let (Some(label), Some(random), Some(secret), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            self.garbage_lines += 1;
            return;
        };
        let (Some(random), Some(secret)) = (unhex(random), unhex(secret)) else {
            self.garbage_lines += 1;
            return;
        };
        let Ok(random) = <[u8; 32]>::try_from(random.as_slice()) else {
            // `RSA` lines key on 8 bytes of the encrypted premaster, not a random.
            if label == "RSA" {
                self.unused_lines += 1;
            } else {
                self.garbage_lines += 1;
            }
            return;
        };
        let valid_len = match label {
            "CLIENT_RANDOM" => secret.len() == 48,
            _ => secret.len() == 32 || secret.len() == 48,
        };
        if !valid_len {
            self.garbage_lines += 1;
            return;
        }
        let slot: fn(&mut Secrets) -> &mut Option<Vec<u8>> = match label {
            "CLIENT_RANDOM" => |s| &mut s.master,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => |s| &mut s.client_handshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => |s| &mut s.server_handshake,
            "CLIENT_TRAFFIC_SECRET_0" => |s| &mut s.client_traffic0,
            "SERVER_TRAFFIC_SECRET_0" => |s| &mut s.server_traffic0,
            "EXPORTER_SECRET" | "CLIENT_EARLY_TRAFFIC_SECRET" | "EARLY_EXPORTER_SECRET" => {
                self.unused_lines += 1;
                return;
            }
            _ => {
                self.garbage_lines += 1;
                return;
            }
        };
        *slot(self.sessions.entry(random).or_default()) = Some(secret);
    }

    /// The secrets of the session whose ClientHello carried `client_random`.
    pub(crate) fn get(&self, client_random: &[u8; 32]) -> Option<&Secrets> {
        self.sessions.get(client_random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_labels_garbage_and_comments() {
        let r = "ab".repeat(32);
        let s32 = "01".repeat(32);
        let s48 = "02".repeat(48);
        let text = format!(
            "# comment\n\nCLIENT_RANDOM {r} {s48}\nCLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {s32}\r\n\
             SERVER_TRAFFIC_SECRET_0 {r} {s32}\nEXPORTER_SECRET {r} {s32}\n\
             RSA 0011223344556677 {s48}\nnot a key line\nCLIENT_RANDOM {r} zz\n\
             CLIENT_RANDOM abcd {s48}\nCLIENT_RANDOM {r} {s32}\nWHAT {r} {s32}\n"
        );
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&[0xff, b'\n']);
        let mut log = KeyLog::new();
        log.add(&bytes);
        assert_eq!(log.sessions(), 1);
        let s = log.get(&[0xab; 32]).unwrap();
        assert_eq!(s.master.as_deref(), Some(&[2u8; 48][..]));
        assert_eq!(s.client_handshake.as_deref(), Some(&[1u8; 32][..]));
        assert!(s.server_handshake.is_none());
        assert!(s.server_traffic0.is_some());
        assert_eq!(log.unused_lines, 2);
        // "not a key line", bad hex, short random, 32-byte master, unknown label, non-UTF-8.
        assert_eq!(log.garbage_lines, 6);
        let shown = format!("{log:?}");
        assert!(
            !shown.contains("0101") && !shown.contains("abab"),
            "{shown}"
        );
    }
}
