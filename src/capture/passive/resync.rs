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
    /// Bytes kept from earlier pieces: a candidate whose head is incomplete, or the tail
    /// of the last piece in case a start line is split across pieces.
    carry: Vec<u8>,
    /// Whether `carry[0]` is a candidate (right after the hole, or an incomplete head).
    carry_is_candidate: bool,
    fed: u64,
    /// Bytes dropped so far while searching (held bytes are not counted).
    pub skipped: u64,
}

/// Bytes of the last piece kept when no candidate is pending: enough for a request line
/// split across pieces to be found by its ` HTTP/1.` and backtracked to its method.
const TAIL: usize = 4096;

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
            carry_is_candidate: true,
            fed: 0,
            skipped: 0,
        }
    }

    /// Feeds the next piece (one reassembled segment's bytes); returns the bytes from the
    /// message start on once one is found (the scanner is then done), `None` while still
    /// searching.
    ///
    /// Candidates: right after the hole, the start of each piece (a sender usually begins
    /// a message with a new write, and a body ends in arbitrary bytes, not a line feed),
    /// every line start, and every `HTTP/1.` (a status line, or a request line found by
    /// backing up from its version to its method).
    pub(super) fn feed(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        self.fed += data.len() as u64;
        let mut buf = std::mem::take(&mut self.carry);
        let piece_start = buf.len();
        buf.extend_from_slice(data);
        let mut candidates = Vec::new();
        if self.carry_is_candidate {
            candidates.push(0);
        }
        candidates.push(piece_start);
        candidates.extend(
            buf.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        let mut at = 0;
        while let Some(p) = find(&buf[at..], b"HTTP/1.") {
            let p = at + p;
            match self.role {
                Role::Response => candidates.push(p),
                Role::Request => candidates.extend(request_line_start(&buf, p)),
            }
            at = p + 1;
        }
        candidates.sort_unstable();
        candidates.dedup();
        for c in candidates.into_iter().filter(|c| *c < buf.len()) {
            match self.verdict(&buf[c..]) {
                Verdict::Head => {
                    buf.drain(..c);
                    self.skipped = self.fed - buf.len() as u64;
                    return Some(buf);
                }
                Verdict::NeedMore => {
                    buf.drain(..c);
                    self.skipped = self.fed - buf.len() as u64;
                    self.carry = buf;
                    self.carry_is_candidate = true;
                    return None;
                }
                Verdict::Not => {}
            }
        }
        let keep = buf.len().min(TAIL);
        buf.drain(..buf.len() - keep);
        self.skipped = self.fed - buf.len() as u64;
        self.carry = buf;
        self.carry_is_candidate = false;
        None
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
                let method_len = b
                    .iter()
                    .take(17)
                    .take_while(|c| c.is_ascii_uppercase())
                    .count();
                match b.get(method_len) {
                    None => method_len == b.len(),
                    Some(b' ') => (1..=16).contains(&method_len),
                    Some(_) => false,
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// For a ` HTTP/1.` at `version`: where its request line's method starts, if the bytes
/// before are `METHOD SP target SP`. When the upper-case run before the target ends in a
/// known method, that method is taken (a body may end in capitals); otherwise the whole
/// run, as an extension method.
fn request_line_start(buf: &[u8], version: usize) -> Option<usize> {
    const METHODS: [&[u8]; 9] = [
        b"OPTIONS", b"CONNECT", b"DELETE", b"TRACE", b"PATCH", b"POST", b"HEAD", b"GET", b"PUT",
    ];
    let before = buf.get(..version.checked_sub(1)?)?;
    if buf.get(version - 1) != Some(&b' ') {
        return None;
    }
    let target_start = before.iter().rposition(|b| *b == b' ')? + 1;
    if target_start == before.len() {
        return None;
    }
    let run = &before[..target_start - 1];
    let method_len = run
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    let method = &run[run.len() - method_len..];
    let len = match METHODS.iter().find(|m| method.ends_with(m)) {
        Some(known) => known.len(),
        // An extension method, when nothing alphanumeric runs into it.
        None if (1..=16).contains(&method_len)
            && (method_len == run.len()
                || !run[run.len() - method_len - 1].is_ascii_alphanumeric()) =>
        {
            method_len
        }
        None => return None,
    };
    Some(run.len() - len)
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
    fn a_message_right_after_a_body_is_found_at_its_segment_start() {
        // A body ends in arbitrary bytes: the next message starts with a new segment, or
        // is found by its version.
        let (found, skipped) = scan(Role::Response, &[b"\x01\x02", b"HTTP/1.1 200 OK\r\n\r\n"]);
        assert_eq!(found.as_deref(), Some(&b"HTTP/1.1 200 OK\r\n\r\n"[..]));
        assert_eq!(skipped, 2);
        let (found, _) = scan(
            Role::Response,
            &[b"\x01\x02HTTP/1.1 204 No Content\r\n\r\n"],
        );
        assert_eq!(
            found.as_deref(),
            Some(&b"HTTP/1.1 204 No Content\r\n\r\n"[..])
        );
        let (found, _) = scan(Role::Request, &[b"\x00\x7fXYZGET /q HTTP/1.1\r\n\r\n"]);
        assert_eq!(found.as_deref(), Some(&b"GET /q HTTP/1.1\r\n\r\n"[..]));
        let (found, _) = scan(
            Role::Request,
            &[b"zz", b"zDELETE /a/", b"b HTTP/1.1\r\n\r\n"],
        );
        assert_eq!(found.as_deref(), Some(&b"DELETE /a/b HTTP/1.1\r\n\r\n"[..]));
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
        assert!(r.carry.len() <= TAIL, "{}", r.carry.len());
        assert!(r.skipped > 100_000);
        // Lower-case words and headers of a previous message are not request lines.
        assert!(r.feed(b"\nget / HTTP/1.1\r\n\r\nHost: x\r\n").is_none());
        assert_eq!(
            r.feed(b"\nPUT /k HTTP/1.1\r\n\r\n").as_deref(),
            Some(&b"PUT /k HTTP/1.1\r\n\r\n"[..])
        );
    }
}
