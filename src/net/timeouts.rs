//! How long a client may take: one policy for every HTTP/1 server mf runs (the recording
//! proxy and the replay), so a slow or silent client is closed the same way by both.
//!
//! Without these, 1,500 connections sending a request head one byte per second (or nothing)
//! were never closed, and with the inherited descriptor limit they made mf unreachable.

use std::time::Duration;

use tokio::time::Instant;

/// Client-side timeouts for an HTTP/1 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// From a connection's start, or a request head's first byte, to the end of that head
    /// (nginx's `client_header_timeout` is 60 s; Apache's `RequestReadTimeout` header=20-40).
    pub header: Duration,
    /// Between requests on a keep-alive connection, and between reads of a request body.
    pub idle: Duration,
}

impl Default for ClientTimeouts {
    fn default() -> Self {
        ClientTimeouts {
            header: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

/// What a server waits for when it reads from a client, and so which deadline applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// The first request of a new connection: the header timeout, from the connection's start.
    FirstRequest,
    /// A new request on a keep-alive connection that has served one: the idle timeout.
    NextRequest,
    /// The rest of a request head whose first byte came at the given instant.
    Head(Instant),
    /// More of a request body: the idle timeout, from now.
    Body,
}

impl ClientTimeouts {
    /// The instant a read waiting for `what` gives up; `connected`: when the connection
    /// began.
    pub fn deadline(&self, what: Waiting, connected: Instant, now: Instant) -> Instant {
        match what {
            Waiting::FirstRequest => connected + self.header,
            Waiting::NextRequest | Waiting::Body => now + self.idle,
            Waiting::Head(first_byte) => first_byte + self.header,
        }
    }

    /// True when a timeout at `what` deserves an answer (408) rather than a silent close:
    /// the client had started a request (RFC 9110 §15.5.9).
    pub fn answers(what: Waiting) -> bool {
        matches!(what, Waiting::Head(_) | Waiting::Body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_what_is_awaited() {
        let t = ClientTimeouts {
            header: Duration::from_secs(3),
            idle: Duration::from_secs(10),
        };
        let c = Instant::now();
        let now = c + Duration::from_secs(5);
        assert_eq!(
            t.deadline(Waiting::FirstRequest, c, now),
            c + Duration::from_secs(3)
        );
        assert_eq!(
            t.deadline(Waiting::NextRequest, c, now),
            now + Duration::from_secs(10)
        );
        assert_eq!(
            t.deadline(Waiting::Head(c + Duration::from_secs(4)), c, now),
            c + Duration::from_secs(7)
        );
        assert!(ClientTimeouts::answers(Waiting::Body));
        assert!(!ClientTimeouts::answers(Waiting::NextRequest));
    }
}
