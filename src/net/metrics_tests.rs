use super::*;
use crate::model::{Header, Request, Response};

#[test]
fn exposition_has_the_counted_series() {
    let m = Metrics::new().unwrap();
    for _ in 0..2 {
        m.request(
            "http/1.1",
            "/users/{id}",
            200,
            true,
            Duration::from_millis(3),
        );
    }
    m.fault("reset");
    let text = m.render();
    assert!(
        text.contains(
            r#"mf_requests_total{match="matched",protocol="http/1.1",route="/users/{id}",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"mf_faults_injected_total{kind="reset"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("mf_request_duration_seconds_bucket"),
        "{text}"
    );
    assert_eq!(m.fault_counts().get("reset"), Some(&1));
}

#[test]
fn websocket_sessions_count_frames_closes_and_abnormal_ends() {
    let m = Metrics::new().unwrap();
    {
        let s = m.ws.open();
        s.frame(Direction::ClientToServer, 1, b"hello");
        s.frame(Direction::ServerToClient, 2, b"\x01\x02");
        s.frame(Direction::ServerToClient, 0x3, b"?");
        assert!(m.render().contains("mf_websocket_connections_active 1"));
        s.frame(Direction::ServerToClient, 8, &1011u16.to_be_bytes());
    }
    drop(m.ws.open());
    let text = m.render();
    for line in [
        "mf_websocket_connections_total 2",
        "mf_websocket_connections_active 0",
        "mf_websocket_connection_duration_seconds_count 2",
        r#"mf_websocket_frames_total{direction="client",opcode="text"} 1"#,
        r#"mf_websocket_frame_bytes_total{direction="client",opcode="text"} 5"#,
        r#"mf_websocket_frame_bytes_total{direction="server",opcode="binary"} 2"#,
        r#"mf_websocket_frames_total{direction="server",opcode="other"} 1"#,
        r#"mf_websocket_closes_total{code="1011",direction="server"} 1"#,
        "mf_websocket_abnormal_closures_total 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

#[test]
fn client_driven_labels_are_bounded() {
    let m = Metrics::new().unwrap();
    for i in 0..(MAX_LABELS + 50) {
        m.grpc_call(&format!("/pkg.S/M{i}"), Some(0));
        m.request(
            "http/1.1",
            &m.bounded_route(&format!("/page-{i}")),
            404,
            false,
            Duration::ZERO,
        );
    }
    m.grpc_call("/pkg.S/M0", Some(99));
    let text = m.render();
    assert!(
        text.contains(r#"mf_grpc_calls_total{code="0",method="other"} 50"#),
        "{text}"
    );
    assert!(text.contains(r#"mf_grpc_calls_total{code="other",method="pkg.S/M0"} 1"#));
    assert!(text.contains(r#"route="unmatched",status="404"} 50"#));
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("mf_requests_total{"))
            .count(),
        MAX_LABELS + 1
    );
}

#[test]
fn proxied_exchanges_count_requests_and_grpc_status() {
    let m = Metrics::new().unwrap();
    let mut ex = Exchange {
        protocol: Some(Protocol::Grpc),
        request: Request {
            method: "POST".into(),
            target: "/routes.Routes/GetFeature".into(),
            ..Default::default()
        },
        response: Some(Response {
            status: 200,
            trailers: vec![Header {
                name: "grpc-status".into(),
                value: b"5"[..].into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    ex.timings.response_end_ns = Some(2_000_000);
    m.proxied(&ex);
    assert_eq!(grpc_status(&ex), Some(5));
    let text = m.render();
    assert!(
        text.contains(r#"mf_grpc_calls_total{code="5",method="routes.Routes/GetFeature"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mf_requests_total{match="proxied",protocol="grpc",route="/routes.Routes/GetFeature",status="200"} 1"#),
        "{text}"
    );
}
