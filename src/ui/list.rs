//! The exchange list: the filter form and one page of rows.
//!
//! Pages are cut by id (`after=ID`), so SQLite starts each page at its first row through the
//! primary key and stops after one row more than it shows: a page of a 1M-exchange
//! recording costs what a page of a small one does (for filters that match often).

use maud::{html, Markup};

use super::filters::{self, Query, PAGE};
use super::page::{self, bytes, ms, status_class, time_of};
use super::Viewer;
use crate::net::pages::PageResponse;
use crate::store::{ExchangeSummary, RecordingRead, Selection};

/// Up to `limit` rows `selection` picks, in recording order, and whether more follow.
pub(super) fn rows(
    reader: &dyn RecordingRead,
    selection: &Selection,
    limit: usize,
) -> Result<(Vec<ExchangeSummary>, bool), crate::store::StoreError> {
    let mut out = Vec::with_capacity(limit + 1);
    reader.for_each_summary(selection, &mut |s| {
        out.push(s);
        out.len() <= limit
    })?;
    let more = out.len() > limit;
    out.truncate(limit);
    Ok((out, more))
}

pub(super) fn page(viewer: &Viewer, reader: &dyn RecordingRead, q: &Query) -> PageResponse {
    let f = filters::filter(q);
    let (rows, more) = match rows(reader, &f.selection, PAGE) {
        Ok(r) => r,
        Err(e) => return page::failure(viewer, 500, &format!("reading the recording: {e}")),
    };
    let total = viewer.count(reader);
    let next = more
        .then(|| {
            rows.last()
                .map(|r| q.with("after", Some(&r.id.to_string())))
        })
        .flatten();
    let content = html! {
        (form(q))
        @for p in &f.problems { p.error { (p) } }
        p.summary {
            (total) " exchanges in the recording"
            @if !f.selection.is_all() { "; showing those the filters pick" }
            @if let Some(after) = f.selection.after_id { ", after #" (after) }
            "."
        }
        table.list #exchanges {
            thead { tr {
                th { "#" } th { "time (UTC)" } th { "protocol" } th { "method" } th { "URL" }
                th { "status" } th { "req" } th { "resp" } th { "duration" }
            } }
            tbody {
                @for r in &rows { (row(r)) }
            }
        }
        @if rows.is_empty() { p.empty { "No exchange matches." } }
        nav.pager {
            @if f.selection.after_id.is_some() {
                a href={ "/?" (q.with("after", None)) } { "« first page" }
            }
            @if let Some(n) = &next { a.next href={ "/?" (n) } { "next page »" } }
        }
    };
    page::html(page::layout(viewer, "Exchanges", content))
}

fn row(r: &ExchangeSummary) -> Markup {
    let failed = r.error.is_some();
    let status = match (&r.status, &r.grpc_status) {
        (Some(s), Some(g)) if r.protocol == "grpc" => format!("{s}/{g}"),
        (Some(s), _) => s.to_string(),
        (None, _) if failed => "ERR".into(),
        (None, _) => "-".into(),
    };
    let grpc_failed = r.grpc_status.as_deref().is_some_and(|g| g.trim() != "0");
    let class = if grpc_failed && r.protocol == "grpc" {
        "s5"
    } else {
        status_class(r.status, failed)
    };
    html! {
        tr data-id=(r.id) data-protocol=(r.protocol) {
            td { a href={ "/x/" (r.id) } { (r.id) } }
            td.time { (time_of(r.started_at_ns)) }
            td { (r.protocol) }
            td { (r.method) }
            td.url {
                a href={ "/x/" (r.id) } { (r.url) }
                @if r.protocol == "grpc" || r.protocol == "websocket" {
                    " " span.msgs { "[" (r.messages_in) "→ " (r.messages_out) "←]" }
                }
            }
            td.status.(class) title=[r.error.as_deref()] { (status) }
            td.num { (bytes(u64::try_from(r.request_bytes).unwrap_or(0))) }
            td.num { (bytes(u64::try_from(r.response_bytes).unwrap_or(0))) }
            td.num { (r.duration_ms.map_or("-".to_string(), ms)) }
        }
    }
}

/// The filter form: a `GET` of `/` with the fields [`filters::filter`] reads.
fn form(q: &Query) -> Markup {
    let v = |k: &str| q.get(k).unwrap_or("").to_string();
    let select = |name: &str, options: &[(&str, &str)]| {
        let current = v(name);
        html! {
            select name=(name) {
                @for (value, label) in options {
                    option value=(value) selected[current == *value] { (label) }
                }
            }
        }
    };
    html! {
        form.filters #filters method="get" action="/" {
            label { "path " input type="text" name="path" placeholder="/users/*" value=(v("path")); }
            label { "method " (select("method", &[("", "any"), ("GET", "GET"), ("POST", "POST"),
                ("PUT", "PUT"), ("PATCH", "PATCH"), ("DELETE", "DELETE")])) }
            label { "status " (select("status", &[("", "any"), ("2xx", "2xx"), ("3xx", "3xx"),
                ("4xx", "4xx"), ("5xx", "5xx")])) }
            label { "protocol " (select("protocol", &[("", "any"), ("http/1.1", "http/1.1"),
                ("h2", "h2"), ("grpc", "grpc"), ("websocket", "websocket")])) }
            label { "host " input type="text" name="host" value=(v("host")); }
            label { "since " input type="text" name="since" placeholder="2026-11-23T10:15:00Z" value=(v("since")); }
            label { "until " input type="text" name="until" value=(v("until")); }
            label { "slower than " input type="text" name="slow" placeholder="500ms" size="6" value=(v("slow")); }
            label { input type="checkbox" name="errors" value="1" checked[q.get("errors").is_some()]; " errors only" }
            button type="submit" #apply { "Filter" }
            a href="/" { "clear" }
        }
    }
}
