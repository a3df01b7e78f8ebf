//! Sequence diagrams of recorded exchanges: Mermaid `sequenceDiagram` source (what
//! `mf diagram` prints) and the same diagram drawn as SVG on the server, since no Mermaid
//! script can be loaded (no CDN, no Node build).
//!
//! Participants are the client, mf, and each host the client addressed, in order of first
//! appearance; each exchange is four arrows: the request to mf and on to the host, the
//! answer (status and time) back to mf and on to the client. An exchange without an answer
//! ends in a cross.

use maud::{html, Markup};

use super::filters::{self, Query};
use super::page;
use super::Viewer;
use crate::net::pages::PageResponse;
use crate::store::{ExchangeSummary, RecordingRead};

/// Exchanges one diagram shows at most: beyond that a diagram is no longer readable.
pub const MAX_EXCHANGES: usize = 500;

/// One arrow: from, to, label, and whether it is an answer (dashed) or a failure (cross).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Arrow {
    from: usize,
    to: usize,
    label: String,
    answer: bool,
    failed: bool,
}

/// The participants (client, mf, hosts) and arrows of `rows`.
fn arrows(rows: &[ExchangeSummary]) -> (Vec<String>, Vec<Arrow>) {
    let mut names = vec!["client".to_string(), "mf".to_string()];
    let mut out = Vec::new();
    for r in rows {
        let host = host_of(&r.url);
        let h = match names.iter().skip(2).position(|n| *n == host) {
            Some(i) => i + 2,
            None => {
                names.push(host);
                names.len() - 1
            }
        };
        let request = match r.protocol.as_str() {
            "grpc" => format!("gRPC {}", r.target.trim_start_matches('/')),
            "websocket" => format!(
                "{} {} (WebSocket, {}→ {}←)",
                r.method, r.target, r.messages_in, r.messages_out
            ),
            _ => format!("{} {}", r.method, r.target),
        };
        let time = r
            .duration_ms
            .map_or(String::new(), |ms| format!(" ({})", page::ms(ms)));
        let (answer, failed) = match (r.status, &r.error) {
            (Some(s), _) => {
                let grpc = r
                    .grpc_status
                    .as_deref()
                    .filter(|_| r.protocol == "grpc")
                    .map_or(String::new(), |g| format!(" grpc-status {g}"));
                (format!("{s}{grpc}{time}"), false)
            }
            (None, Some(_)) => (
                format!("{}{time}", r.error_kind.as_deref().unwrap_or("error")),
                true,
            ),
            (None, None) => (format!("no answer{time}"), true),
        };
        let arrow = |from, to, label: &str, answer, failed| Arrow {
            from,
            to,
            label: label.to_string(),
            answer,
            failed,
        };
        out.push(arrow(0, 1, &request, false, false));
        out.push(arrow(1, h, &request, false, false));
        out.push(arrow(h, 1, &answer, true, failed));
        out.push(arrow(1, 0, &answer, true, failed));
    }
    (names, out)
}

/// `http://h:1/p` → `h:1`.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest);
    if host.is_empty() { "upstream" } else { host }.to_string()
}

/// Mermaid cannot take `;`, `#` or line breaks in a message as is: its entity codes.
fn mermaid_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '#' => "#35;".to_string(),
            ';' => "#59;".to_string(),
            '\n' | '\r' => " ".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The Mermaid `sequenceDiagram` source of `rows` (at most [`MAX_EXCHANGES`]; a comment
/// says how many more there were).
pub fn mermaid(rows: &[ExchangeSummary], more: bool) -> String {
    let shown = &rows[..rows.len().min(MAX_EXCHANGES)];
    let (names, arrows) = arrows(shown);
    let mut out = String::from("sequenceDiagram\n");
    for (i, n) in names.iter().enumerate() {
        match i {
            0 | 1 => out.push_str(&format!("    participant {n}\n")),
            _ => out.push_str(&format!(
                "    participant h{} as {}\n",
                i - 1,
                mermaid_text(n)
            )),
        }
    }
    let id = |i: usize| match i {
        0 => "client".to_string(),
        1 => "mf".to_string(),
        _ => format!("h{}", i - 1),
    };
    for a in &arrows {
        let op = match (a.answer, a.failed) {
            (false, _) => "->>",
            (true, false) => "-->>",
            (true, true) => "--x",
        };
        out.push_str(&format!(
            "    {}{op}{}: {}\n",
            id(a.from),
            id(a.to),
            mermaid_text(&a.label)
        ));
    }
    if more || rows.len() > shown.len() {
        out.push_str(&format!(
            "    %% only the first {} exchanges are shown\n",
            shown.len()
        ));
    }
    out
}

/// The same diagram as SVG: a lifeline per participant, an arrow per row.
pub(super) fn svg(rows: &[ExchangeSummary]) -> Markup {
    let (names, arrows) = arrows(&rows[..rows.len().min(MAX_EXCHANGES)]);
    const COL: f64 = 220.0;
    const ROW: f64 = 26.0;
    const TOP: f64 = 40.0;
    let cx = |i: usize| 90.0 + i as f64 * COL;
    let width = cx(names.len() - 1) + 110.0;
    let height = TOP + (arrows.len() as f64 + 1.0) * ROW + 10.0;
    html! {
        svg.sequence width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) }
            role="img" font-family="sans-serif" font-size="11" {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto" {
                    path d="M0,0 L10,5 L0,10 z" fill="#333" {}
                }
            }
            @for (i, n) in names.iter().enumerate() {
                rect x=(cx(i) - 80.0) y="4" width="160" height="24" rx="4" fill="#eef2f8" stroke="#446" {}
                text.participant x=(cx(i)) y="20" text-anchor="middle" { (n) }
                line x1=(cx(i)) y1="28" x2=(cx(i)) y2=(height - 4.0) stroke="#99a" stroke-dasharray="4 3" {}
            }
            @for (k, a) in arrows.iter().enumerate() {
                @let y = TOP + (k as f64 + 1.0) * ROW;
                @let (x1, x2) = (cx(a.from), cx(a.to));
                @let color = if a.failed { "#b33" } else { "#333" };
                line.arrow x1=(x1) y1=(y) x2=(x2) y2=(y) stroke=(color)
                    stroke-dasharray=(if a.answer { "5 3" } else { "none" }) marker-end="url(#arrow)" {}
                text x=((x1 + x2) / 2.0) y=(y - 4.0) text-anchor="middle" fill=(color) { (a.label) }
            }
        }
    }
}

/// `/diagram?connection=N | trace=ID | since=…&until=…` (any list filter works too).
pub(super) fn page(viewer: &Viewer, reader: &dyn RecordingRead, q: &Query) -> PageResponse {
    let f = filters::filter(q);
    let chosen = !f.selection.is_all();
    let (rows, more) = if chosen {
        match super::list::rows(reader, &f.selection, MAX_EXCHANGES) {
            Ok(r) => r,
            Err(e) => return page::failure(viewer, 500, &format!("reading the recording: {e}")),
        }
    } else {
        (Vec::new(), false)
    };
    let v = |k: &str| q.get(k).unwrap_or("").to_string();
    let content = html! {
        form.filters method="get" action="/diagram" {
            label { "connection " input type="text" name="connection" size="6" value=(v("connection")); }
            label { "trace id " input type="text" name="trace" size="34" value=(v("trace")); }
            label { "since " input type="text" name="since" value=(v("since")); }
            label { "until " input type="text" name="until" value=(v("until")); }
            button type="submit" { "Draw" }
        }
        @for p in &f.problems { p.error { (p) } }
        @if !chosen {
            p { "Pick one connection, one trace id or a time window (the same as "
                code { "mf diagram FILE --connection N | --trace ID | --since … --until …" } ")." }
        } @else if rows.is_empty() {
            p.empty { "No exchange matches." }
        } @else {
            div.diagram { (svg(&rows)) }
            h2 { "Mermaid source" }
            pre #mermaid { (mermaid(&rows, more)) }
        }
    };
    page::html(page::layout(viewer, "Sequence diagram", content))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, url: &str, status: Option<u16>, protocol: &str) -> ExchangeSummary {
        let target = url
            .split_once("://")
            .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_string()))
            .unwrap_or_default();
        ExchangeSummary {
            id,
            connection_id: 1,
            seq: 0,
            protocol: protocol.into(),
            started_at_ns: 0,
            method: "GET".into(),
            url: url.into(),
            target,
            status,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: Some(12.5),
            error: status.is_none().then(|| "refused".to_string()),
            error_kind: status.is_none().then(|| "upstream_refused".to_string()),
            trace_id: None,
            messages_in: 3,
            messages_out: 4,
            grpc_status: (protocol == "grpc").then(|| "5".to_string()),
        }
    }

    #[test]
    fn mermaid_has_participants_requests_and_answers() {
        let rows = [
            row(
                1,
                "http://api.test:8080/users/1?a=b;c",
                Some(200),
                "http/1.1",
            ),
            row(2, "http://other.test/x#frag", None, "http/1.1"),
            row(
                3,
                "http://api.test:8080/mftest.Routes/Chat",
                Some(200),
                "grpc",
            ),
        ];
        let text = mermaid(&rows, false);
        let expected = "sequenceDiagram
    participant client
    participant mf
    participant h1 as api.test:8080
    participant h2 as other.test
    client->>mf: GET /users/1?a=b#59;c
    mf->>h1: GET /users/1?a=b#59;c
    h1-->>mf: 200 (12.5 ms)
    mf-->>client: 200 (12.5 ms)
    client->>mf: GET /x#35;frag
    mf->>h2: GET /x#35;frag
    h2--xmf: upstream_refused (12.5 ms)
    mf--xclient: upstream_refused (12.5 ms)
    client->>mf: gRPC mftest.Routes/Chat
    mf->>h1: gRPC mftest.Routes/Chat
    h1-->>mf: 200 grpc-status 5 (12.5 ms)
    mf-->>client: 200 grpc-status 5 (12.5 ms)
";
        assert_eq!(text, expected);
        assert!(mermaid(&rows, true).ends_with("%% only the first 3 exchanges are shown\n"));
    }

    #[test]
    fn svg_escapes_recorded_targets() {
        let rows = [row(1, "http://h/<script>", Some(200), "http/1.1")];
        let s = svg(&rows).into_string();
        assert!(s.contains("GET /&lt;script&gt;"), "{s}");
        assert!(!s.contains("<script>"), "{s}");
        assert_eq!(s.matches("class=\"arrow\"").count(), 4);
    }
}
