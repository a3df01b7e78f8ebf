//! A recorded request as a curl command that sends it again: `mf export --format curl` and
//! the viewer's "copy as curl" say the same thing.

use std::fmt::Write;

use crate::model::{Exchange, Protocol};

/// Headers curl sets itself from the command (or that only describe the recorded framing).
const SKIPPED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "expect",
];

/// One command, with a comment line naming the exchange, ending in a blank line.
pub fn command(ex: &Exchange) -> String {
    let req = &ex.request;
    let mut out = String::new();
    let status = ex.response.as_ref().map_or("no response".to_string(), |r| {
        format!("answered {}", r.status)
    });
    let _ = writeln!(out, "\n# exchange {} ({}, {status})", ex.id, ex.protocol());
    match ex.protocol() {
        Protocol::Grpc => {
            out.push_str("# gRPC: the body below is the recorded length-prefixed message stream\n")
        }
        Protocol::WebSocket => out.push_str(
            "# WebSocket: only the opening handshake is a curl request; frames are not replayed\n",
        ),
        _ => {}
    }
    let body = &req.body.data;
    let text_body = std::str::from_utf8(body).ok().filter(|t| {
        !t.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    });
    let piped = !body.is_empty() && text_body.is_none();
    if piped {
        // Bytes a shell word cannot hold (NUL above all) reach curl through printf's `%b`,
        // which turns `\0nnn` octal escapes back into bytes.
        let _ = write!(out, "printf '%b' '{}' | ", octal_escaped(body));
    }
    out.push_str("curl");
    match (req.method.as_str(), body.is_empty()) {
        ("GET", true) => {}
        ("HEAD", _) => out.push_str(" --head"),
        (m, _) => {
            let _ = write!(out, " -X {}", quote(m));
        }
    }
    if matches!(ex.protocol(), Protocol::H2 | Protocol::Grpc) {
        out.push_str(" --http2-prior-knowledge");
    }
    let _ = write!(out, " {}", quote(&ex.url()));
    for h in &req.headers {
        if h.name.starts_with(':') || SKIPPED.iter().any(|s| h.name.eq_ignore_ascii_case(s)) {
            continue;
        }
        let _ = write!(
            out,
            " \\\n  -H {}",
            quote(&format!("{}: {}", h.name, h.value_str()))
        );
    }
    if piped {
        out.push_str(" \\\n  --data-binary @-");
    } else if let Some(text) = text_body.filter(|t| !t.is_empty()) {
        let _ = write!(out, " \\\n  --data-binary {}", quote(text));
    }
    if req.body.truncated {
        let _ = write!(
            out,
            "\n# note: the recorded body was cut at {} of {} bytes",
            body.len(),
            req.body.size
        );
    }
    out.push('\n');
    out
}

/// `s` as one POSIX shell word (no NUL can be in it: callers pipe such bytes instead).
fn quote(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| format!("'{}'", s.replace('\0', "")), |q| q.into_owned())
}

/// Bytes for printf's `%b` inside single quotes: printable ASCII as is (but `\` and `'`),
/// everything else as `\0nnn`.
fn octal_escaped(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 2);
    for &b in data {
        match b {
            b'\\' | b'\'' => {
                let _ = write!(out, "\\0{b:03o}");
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\0{b:03o}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Body, Header, Request};

    fn post(body: &[u8]) -> Exchange {
        Exchange {
            id: 7,
            scheme: "http".into(),
            authority: "api.test:8080".into(),
            request: Request {
                method: "POST".into(),
                target: "/a?b=c d".into(),
                version: "HTTP/1.1".into(),
                headers: vec![
                    Header::new("Host", "api.test:8080"),
                    Header::new("X-Quote", "it's"),
                    Header::new("Content-Length", "3"),
                ],
                body: Body::full(body.to_vec()),
                trailers: Vec::new(),
            },
            ..Exchange::default()
        }
    }

    #[test]
    fn text_bodies_are_quoted_words() {
        let cmd = command(&post(b"{\"a\": \"$HOME\"}"));
        assert!(
            cmd.contains("curl -X POST 'http://api.test:8080/a?b=c d'"),
            "{cmd}"
        );
        assert!(!cmd.contains("Content-Length"), "{cmd}");
        assert!(!cmd.contains("Host:"), "{cmd}");
        assert!(cmd.contains("--data-binary '{\"a\": \"$HOME\"}'"), "{cmd}");
        assert!(cmd.contains("X-Quote: it"), "{cmd}");
    }

    #[test]
    fn binary_bodies_go_through_printf() {
        let cmd = command(&post(&[0, b'a', 0xff, b'\'']));
        assert!(cmd.starts_with("\n# exchange 7"), "{cmd}");
        assert!(
            cmd.contains("printf '%b' '\\0000a\\0377\\0047' | curl"),
            "{cmd}"
        );
        assert!(cmd.contains("--data-binary @-"), "{cmd}");
    }
}
