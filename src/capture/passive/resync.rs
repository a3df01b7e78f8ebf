//! Finding the next HTTP/1 message start after a capture hole: a sans-IO scanner fed the
//! bytes that follow the hole, which says where the first request line (or status line)
//! whose head parses completely begins.
//!
//! A candidate starts right after the hole (holes often end on a message boundary, since
//! a lost segment is often the last of a message) or after a line feed, and must look like
//! a start line (`HTTP/1.x ` for responses, an upper-case method then a space for requests)
//! before the head parser is asked: the same `httparse` the decoder uses, so a head accepted
//! here is one the decoder accepts. A line that merely resembles a start line inside a body
//! is rejected when its head does not parse.
//!
//! Bytes held are bounded: only a candidate whose head is still incomplete is kept, and
//! never more than a head's largest size.

use crate::decode::h1::{Role, DEFAULT_MAX_HEAD};

const MAX_HEADERS: usize = 256;

/// Scanner state for one direction after a hole.
pub(super) struct Resync {
    role: Role,
    /// Bytes from the candidate start (or the last line start) on, waiting for more.
    carry: Vec<u8>,
    /// Whether `carry[0]` is at a line start (or right after the hole).
    at_line_start: bool,
    /// Bytes dropped so far while searching.
    pub skipped: u64,
}

/// What a candidate start line turned out to be.
enum Verdict {
    Head,
    NeedMore,
    Not,
}

impl Resync {
    /// A scanner for the bytes right after a hole in a direction carrying `role` messages.
    pub(super) fn new(role: Role) -> Self {
        Resync {
            role,
            carry: Vec::new(),
            at_line_start: true,
            skipped: 0,
        }
    }

    /// Feeds the next bytes; returns the bytes from the message start on once one is
    /// found (the scanner is then done), `None` while still searching.
    pub(super) fn feed(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(data);
        let mut i = 0;
        let mut line_start = self.at_line_start;
        loop {
            if line_start {
                match self.verdict(&buf[i..]) {
                    Verdict::Head => {
                        self.skipped += i as u64;
                        buf.drain(..i);
                        return Some(buf);
                    }
                    Verdict::NeedMore => {
                        self.skipped += i as u64;
                        buf.drain(..i);
                        self.carry = buf;
                        self.at_line_start = true;
                        return None;
                    }
                    Verdict::Not => {}
                }
            }
            match buf[i..].iter().position(|b| *b == b'\n') {
                Some(p) => {
                    i += p + 1;
                    line_start = true;
                }
                None => {
                    self.skipped += buf.len() as u64;
                    self.at_line_start = false;
                    return None;
                }
            }
        }
    }

    fn verdict(&self, b: &[u8]) -> Verdict {
        if b.is_empty() {
            return Verdict::NeedMore;
        }
        if !self.start_line_prefix(b) {
            return Verdict::Not;
        }
        let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let parsed = match self.role {
            Role::Request => httparse::Request::new(&mut storage).parse(b),
            Role::Response => httparse::ParserConfig::default()
                .allow_obsolete_multiline_headers_in_responses(true)
                .allow_spaces_after_header_name_in_responses(true)
                .parse_response(&mut httparse::Response::new(&mut storage), b),
        };
        match parsed {
            Ok(httparse::Status::Complete(_)) => Verdict::Head,
            Ok(httparse::Status::Partial) if b.len() <= DEFAULT_MAX_HEAD => Verdict::NeedMore,
            _ => Verdict::Not,
        }
    }

    /// Whether `b` starts like a start line of the role (as far as it goes).
    fn start_line_prefix(&self, b: &[u8]) -> bool {
        match self.role {
            Role::Response => {
                let want = b"HTTP/1.";
                let n = b.len().min(want.len());
                b[..n] == want[..n]
            }
            Role::Request => {
                let method_len = b.iter().take(17).take_while(|c| c.is_ascii_uppercase()).count();
                match b.get(method_len) {
                    None => method_len == b.len(),
                    Some(b' ') => (1..=16).contains(&method_len),
                    Some(_) => false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(role: Role, pieces: &[&[u8]]) -> (Option<Vec<u8>>, u64) {
        let mut r = Resync::new(role);
        for p in pieces {
            if let Some(found) = r.feed(p) {
                return (Some(found), r.skipped);
            }
        }
        (None, r.skipped)
    }

    #[test]
    fn a_status_line_right_after_the_hole_is_taken() {
        let (found, skipped) = scan(Role::Response, &[b"HTTP/1.1 200 OK\r\n\r\n"]);
        assert_eq!(found.as_deref(), Some(&b"HTTP/1.1 200 OK\r\n\r\n"[..]));
        assert_eq!(skipped, 0);
    }

    #[test]
    fn body_bytes_are_skipped_up_to_a_head_that_parses() {
        let tail = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let mut stream = b"ody rest\nHTTP/1.1 but not a head\x00\n".to_vec();
        stream.extend_from_slice(tail);
        let (found, skipped) = scan(Role::Response, &[&stream]);
        assert_eq!(found.as_deref(), Some(&tail[..]));
        assert_eq!(skipped as usize, stream.len() - tail.len());
    }

    #[test]
    fn a_start_line_split_across_pieces_is_found() {
        let (found, _) = scan(
            Role::Request,
            &[b"xx\r\nGE", b"T /a HTTP/1.1\r\nHo", b"st: h\r\n\r\nbody"],
        );
        assert_eq!(
            found.as_deref(),
            Some(&b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nbody"[..])
        );
    }

    #[test]
    fn binary_garbage_finds_nothing_and_holds_little() {
        let mut r = Resync::new(Role::Request);
        let garbage: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        for piece in garbage.chunks(1448) {
            assert!(r.feed(piece).is_none());
        }
        assert!(r.carry.len() <= DEFAULT_MAX_HEAD, "{}", r.carry.len());
        assert!(r.skipped > 100_000);
        // Lower-case words and headers of a previous message are not request lines.
        assert!(r.feed(b"\nget / HTTP/1.1\r\n\r\nHost: x\r\n").is_none());
        assert_eq!(
            r.feed(b"\nPUT /k HTTP/1.1\r\n\r\n").as_deref(),
            Some(&b"PUT /k HTTP/1.1\r\n\r\n"[..])
        );
    }
}
