use super::*;

/// One Chrome-shaped entry: h2 pseudo-headers, browser extras, a gzip answer kept decoded.
const CHROME: &str = r#"{"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
  "pages": [],
  "entries": [{
    "_initiator": {"type": "other"}, "_priority": "VeryHigh", "_resourceType": "fetch",
    "cache": {}, "connection": "4711", "serverIPAddress": "127.0.0.1",
    "startedDateTime": "2026-12-01T10:00:00.000+01:00", "time": 12.5,
    "request": {"method": "POST", "url": "https://api.test/items?x=1#top", "httpVersion": "h2",
      "headers": [{"name": ":authority", "value": "api.test"}, {"name": "content-type", "value": "application/json"}],
      "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 7,
      "postData": {"mimeType": "application/json", "text": "{\"a\":1}"}},
    "response": {"status": 201, "statusText": "", "httpVersion": "h2",
      "headers": [{"name": "content-encoding", "value": "gzip"}, {"name": "content-length", "value": "99"}],
      "cookies": [], "content": {"size": 4, "mimeType": "text/plain", "text": "b2sh", "encoding": "base64"},
      "redirectURL": "", "headersSize": -1, "bodySize": 30, "_transferSize": 130},
    "timings": {"blocked": 1.0, "dns": -1, "ssl": -1, "connect": -1, "send": 0.5, "wait": 10.0, "receive": 1.0}
  }]}}"#;

#[test]
fn a_chrome_entry_becomes_an_exchange() {
    let list = read(CHROME.as_bytes()).unwrap();
    assert_eq!(list.len(), 1);
    let ex = &list[0];
    assert_eq!(ex.protocol, Some(Protocol::H2));
    assert_eq!(
        (ex.scheme.as_str(), ex.authority.as_str()),
        ("https", "api.test")
    );
    assert_eq!(ex.request.target, "/items?x=1");
    assert_eq!(ex.request.headers.len(), 1, "pseudo-headers dropped");
    assert_eq!(&ex.request.body.data[..], b"{\"a\":1}");
    // 09:00Z plus 1 ms blocked.
    assert_eq!(ex.started_at_ns, 1_796_115_600_001_000_000);
    let resp = ex.response.as_ref().unwrap();
    assert_eq!(&resp.body.data[..], b"ok!");
    assert!(resp.headers.header("content-encoding").is_none());
    assert_eq!(
        resp.headers.header_str("content-length").as_deref(),
        Some("3")
    );
    assert_eq!(ex.timings.response_end_ns, Some(11_500_000));
    assert_eq!(ex.server_addr.as_deref(), Some("127.0.0.1:443"));
}

#[test]
fn broken_json_says_where() {
    let broken = CHROME.replacen("\"time\": 12.5,", "\"time\": 12.5", 1);
    let e = read(broken.as_bytes()).unwrap_err().to_string();
    assert!(
        e.starts_with("invalid HAR at line 7, column 5: expected"),
        "{e}"
    );
    assert!(!e.contains("at line 7 column"), "{e}");
    let bad_url = CHROME.replacen("https://api.test", "api.test", 1);
    let e = read(bad_url.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("entries[0]"), "{e}");
}

#[test]
fn chrome_websocket_messages_become_frames() {
    let har = r#"{"log": {"entries": [{
      "startedDateTime": "2026-12-01T09:00:00Z", "time": 5,
      "_resourceType": "websocket",
      "request": {"method": "GET", "url": "wss://chat.test/socket", "httpVersion": "HTTP/1.1",
        "headers": [{"name": "Upgrade", "value": "websocket"}]},
      "response": {"status": 101, "statusText": "Switching Protocols", "httpVersion": "HTTP/1.1",
        "headers": [], "content": {"size": 0, "mimeType": "x-unknown"}},
      "timings": {"send": 0, "wait": 5, "receive": 0},
      "_webSocketMessages": [
        {"type": "send", "time": 1796115600.25, "opcode": 1, "data": "hello"},
        {"type": "receive", "time": 1796115600.5, "opcode": 2, "data": "AAH/"}
      ]}]}}"#;
    let list = read(har.as_bytes()).unwrap();
    let ex = &list[0];
    assert_eq!(ex.protocol, Some(Protocol::WebSocket));
    assert_eq!(
        (ex.scheme.as_str(), ex.request.target.as_str()),
        ("https", "/socket")
    );
    assert_eq!(ex.messages.len(), 2);
    assert_eq!(ex.messages[0].direction, Direction::ClientToServer);
    assert_eq!(ex.messages[0].offset_ns, 250_000_000);
    assert_eq!(&ex.messages[0].data[..], b"hello");
    assert_eq!(ex.messages[1].direction, Direction::ServerToClient);
    assert_eq!(&ex.messages[1].data[..], [0u8, 1, 255]);
}

#[test]
fn a_blocked_request_is_an_exchange_with_an_error() {
    let har = r#"{"log": {"entries": [{"startedDateTime": "2026-12-01T09:00:00.5Z",
      "request": {"method": "GET", "url": "http://ads.test/p", "headers": []},
      "response": {"status": 0, "_error": "net::ERR_BLOCKED_BY_CLIENT"}}]}}"#;
    let list = read(har.as_bytes()).unwrap();
    assert!(list[0].response.is_none());
    let error = list[0].error.as_ref().unwrap();
    assert_eq!(error.message, "net::ERR_BLOCKED_BY_CLIENT");
}
