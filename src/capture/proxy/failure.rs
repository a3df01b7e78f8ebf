//! How an HTTP/1 exchange or client connection went wrong, for the record and the client.

use crate::decode::h1;
use crate::model::{ErrorKind, ExchangeError};

/// How an exchange went wrong.
#[derive(Debug)]
pub(super) enum Failure {
    /// No usable response: the client gets a 502/504 if nothing was sent yet.
    Upstream {
        status: u16,
        kind: ErrorKind,
        message: String,
    },
    /// The client went away or broke the protocol.
    Client(String),
    /// The client stopped sending a request body it had begun: answered 408 when no
    /// response has started.
    ClientStalled(String),
}

impl Failure {
    pub(super) fn upstream(status: u16, kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure::Upstream {
            status,
            kind,
            message: message.into(),
        }
    }

    /// The status the client gets and the error the record keeps.
    pub(super) fn into_parts(self) -> (u16, ExchangeError) {
        match self {
            Failure::Upstream {
                status,
                kind,
                message,
            } => (status, ExchangeError::new(kind, message)),
            Failure::Client(message) => {
                (502, ExchangeError::new(ErrorKind::ClientAborted, message))
            }
            Failure::ClientStalled(message) => {
                (408, ExchangeError::new(ErrorKind::ClientAborted, message))
            }
        }
    }
}

/// Why no request head could be read from a client.
#[derive(Debug)]
pub(super) enum ClientError {
    Decode(h1::Error),
    Io(String),
    Unsupported(&'static str),
    /// The client did not send (the rest of) a request in time; `answer`: it had begun one.
    TimedOut {
        answer: bool,
    },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Decode(e) => write!(f, "{e}"),
            ClientError::Io(e) => f.write_str(e),
            ClientError::Unsupported(e) => f.write_str(e),
            ClientError::TimedOut { .. } => f.write_str("client did not send a request in time"),
        }
    }
}
