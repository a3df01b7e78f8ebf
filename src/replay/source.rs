//! Where the replay server's answers come from, when not from a recording's exact matcher.
//!
//! The server asks an [`AnswerSource`] for the response to a request; the fixtures folder
//! ([`super::fixtures::FixtureSource`]) is one. Keeping the question this small lets the same
//! server (and its latency and fault plans) serve a recording or a fixtures folder.

use crate::model::Response;

use super::matcher::Incoming;

/// The verdict of an answer source.
#[derive(Debug)]
pub enum Answer {
    /// Serve this response; `label` names what matched (`GET /users/{id} example 200`).
    Response { response: Response, label: String },
    /// Nothing matched; the JSON explains why (served as a 404 body).
    NotFound(serde_json::Value),
}

/// Something that answers requests.
pub trait AnswerSource: Send + Sync {
    /// The answer for `req`. May update internal state (stateful replay).
    fn answer(&self, req: &Incoming<'_>) -> Answer;
}
