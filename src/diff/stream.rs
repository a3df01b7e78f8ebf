//! Stream comparison: the server's gRPC messages and WebSocket frames, in order.

use super::body;
use super::scope::{Scope, ABSENT};
use crate::model::{Direction, Exchange, MessageKind, StreamMessage};

/// WebSocket opcodes that carry data or end the session (pings and pongs are keep-alive).
fn ws_data(opcode: u8) -> bool {
    matches!(opcode, 0 | 1 | 2 | 8)
}

/// The messages the server sent that a comparison looks at.
fn server_messages(ex: &Exchange) -> impl Iterator<Item = &StreamMessage> {
    ex.messages.iter().filter(|m| {
        m.direction == Direction::ServerToClient
            && match m.kind {
                MessageKind::Grpc { .. } => true,
                MessageKind::WebSocket { opcode, .. } => ws_data(opcode),
            }
    })
}

/// Compares the server's messages one by one, in order; then their counts.
pub(super) fn compare(scope: &mut Scope<'_>, recorded: &Exchange, observed: &Exchange) {
    let a: Vec<&StreamMessage> = server_messages(recorded).collect();
    let b: Vec<&StreamMessage> = server_messages(observed).collect();
    if a.is_empty() && b.is_empty() {
        return;
    }
    let grpc = a
        .iter()
        .chain(&b)
        .any(|m| matches!(m.kind, MessageKind::Grpc { .. }));
    let what = if grpc { "grpc message" } else { "ws frame" };
    for i in 0..a.len().max(b.len()) {
        let name = format!("{what} {}", i + 1);
        match (a.get(i), b.get(i)) {
            (Some(x), Some(y)) => message(scope, &name, x, y),
            (Some(x), None) => {
                let s = describe(x);
                scope.differ(name, &s, ABSENT, s.clone(), ABSENT.into());
            }
            (None, Some(y)) => {
                let s = describe(y);
                scope.differ(name, ABSENT, &s, ABSENT.into(), s.clone());
            }
            (None, None) => {}
        }
    }
}

fn message(scope: &mut Scope<'_>, name: &str, x: &StreamMessage, y: &StreamMessage) {
    if let (MessageKind::WebSocket { opcode: oa, .. }, MessageKind::WebSocket { opcode: ob, .. }) =
        (&x.kind, &y.kind)
    {
        if oa != ob {
            let (sa, sb) = (opcode_name(*oa).to_string(), opcode_name(*ob).to_string());
            return scope.differ(format!("{name} opcode"), &sa, &sb, sa.clone(), sb.clone());
        }
        if *oa == 8 {
            // A close frame: the code is what matters; the reason is for people.
            let code = |d: &[u8]| match d {
                [h, l, ..] => u16::from_be_bytes([*h, *l]).to_string(),
                _ => "none".to_string(),
            };
            let (ca, cb) = (code(&x.data), code(&y.data));
            if ca != cb {
                scope.differ(
                    format!("{name} close code"),
                    &ca,
                    &cb,
                    ca.clone(),
                    cb.clone(),
                );
            }
            return;
        }
    }
    let plain_grpc = |m: &StreamMessage| matches!(m.kind, MessageKind::Grpc { compressed: false });
    if plain_grpc(x)
        && plain_grpc(y)
        && x.data != y.data
        && !body::looks_json(&x.data)
        && body::protobuf(scope, &format!("{name} "), &x.data, &y.data)
    {
        return;
    }
    body::payload(scope, &format!("{name} "), name, &x.data, &y.data, false);
}

fn opcode_name(op: u8) -> &'static str {
    match op {
        0 => "continuation",
        1 => "text",
        2 => "binary",
        8 => "close",
        9 => "ping",
        10 => "pong",
        _ => "reserved",
    }
}

fn describe(m: &StreamMessage) -> String {
    match m.kind {
        MessageKind::WebSocket { opcode, .. } => {
            format!("{} frame, {} bytes", opcode_name(opcode), m.data.len())
        }
        MessageKind::Grpc { .. } => format!("message, {} bytes", m.data.len()),
    }
}
