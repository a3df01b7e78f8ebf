//! The faults a replay can inject, per protocol. Pure data: the servers apply them.
//!
//! In config files and the admin API a fault is a YAML/JSON value: a bare word for the ones
//! without parameters (`reset`, `hang`, `grpc_abort`, `ws_drop`) or a one-key map
//! (`{status: {code: 503, body: "busy"}}`, `{drip: {bandwidth: 100}}`, `{close_mid_body: {}}`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One injected failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer with this status. Without `body`, the recorded body (or a short JSON error when
    /// nothing matched) goes with it.
    Status {
        code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Reset the connection (TCP RST; RST_STREAM for HTTP/2) instead of answering.
    Reset,
    /// Never answer; hold the connection until the client gives up.
    Hang,
    /// Send the head and part of the body, then close (a truncated response).
    CloseMidBody {
        /// Bytes of the body sent before closing; half the body when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after_bytes: Option<u64>,
    },
    /// Wait this long before the first byte (on top of the latency).
    SlowFirstByte {
        #[serde(with = "duration_text")]
        delay: Duration,
    },
    /// Send the body at this many bytes per second.
    Drip { bandwidth: u64 },
    /// gRPC: end the call with this `grpc-status` and `grpc-message`.
    GrpcStatus {
        code: u32,
        #[serde(default)]
        message: String,
    },
    /// gRPC: abort the stream in the middle (RST_STREAM after the first message).
    GrpcAbort,
    /// WebSocket: drop the TCP connection without a close frame (the client sees 1006).
    WsDrop,
    /// WebSocket: close with this code and reason.
    WsClose {
        code: u16,
        #[serde(default)]
        reason: String,
    },
    /// WebSocket: hold every server frame back this long.
    WsDelayFrames {
        #[serde(with = "duration_text")]
        delay: Duration,
    },
    /// WebSocket: drop each server frame with this probability.
    WsDropFrames { probability: f64 },
}

impl Fault {
    /// The stable name used as the `kind` label of `mf_faults_injected_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Status { .. } => "status",
            Fault::Reset => "reset",
            Fault::Hang => "hang",
            Fault::CloseMidBody { .. } => "close_mid_body",
            Fault::SlowFirstByte { .. } => "slow_first_byte",
            Fault::Drip { .. } => "drip",
            Fault::GrpcStatus { .. } => "grpc_status",
            Fault::GrpcAbort => "grpc_abort",
            Fault::WsDrop => "ws_drop",
            Fault::WsClose { .. } => "ws_close",
            Fault::WsDelayFrames { .. } => "ws_delay_frames",
            Fault::WsDropFrames { .. } => "ws_drop_frames",
        }
    }
}

/// `Duration` as humantime text (`"2s"`).
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_from_yaml() {
        let f: Vec<Fault> = crate::replay::rules::from_yaml(
            "- reset\n- hang\n- {status: {code: 503, body: busy}}\n- {slow_first_byte: {delay: 2s}}\n- {ws_close: {code: 4001}}\n",
        )
        .unwrap();
        assert_eq!(f[0], Fault::Reset);
        assert_eq!(
            f[2],
            Fault::Status {
                code: 503,
                body: Some("busy".into())
            }
        );
        assert_eq!(
            f[3],
            Fault::SlowFirstByte {
                delay: Duration::from_secs(2)
            }
        );
        assert_eq!(
            f[4],
            Fault::WsClose {
                code: 4001,
                reason: String::new()
            }
        );
        assert!(crate::replay::rules::from_yaml::<Fault>("explode").is_err());
        let json = serde_json::to_string(&f[3]).unwrap();
        assert_eq!(json, r#"{"slow_first_byte":{"delay":"2s"}}"#);
    }
}
