//! The frame every page shares (title bar, navigation, assets) and small formatting helpers.

use maud::{html, Markup, DOCTYPE};

use super::Viewer;
use crate::net::pages::PageResponse;

/// A whole HTML page as the answer.
pub(super) fn html(markup: Markup) -> PageResponse {
    PageResponse::ok("text/html; charset=utf-8", markup.into_string())
}

/// `content` inside the frame, titled `title`.
pub(super) fn layout(viewer: &Viewer, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mf · " (viewer.name) }
                link rel="stylesheet" href="/assets/ui.css";
                script src="/assets/ui.js" defer {}
            }
            body {
                header.top {
                    span.brand { "mf" }
                    span.file { (viewer.name) }
                    nav {
                        @if viewer.recording.is_some() {
                            a href="/" { "Exchanges" }
                        }
                        a href="/endpoints" { "Endpoints & patterns" }
                        @if viewer.recording.is_some() {
                            a href="/diagram" { "Sequence diagram" }
                        }
                        @if viewer.control {
                            a href="/control" { "Control center" }
                        }
                    }
                }
                main { h1 { (title) } (content) }
            }
        }
    }
}

/// A 404 page for `path`.
pub(super) fn not_found(viewer: &Viewer, path: &str) -> PageResponse {
    let mut r = html(layout(
        viewer,
        "Not found",
        html! { p { "No page " code { (path) } "." } },
    ));
    r.status = 404;
    r
}

/// A page saying what went wrong, with `status`.
pub(super) fn failure(viewer: &Viewer, status: u16, message: &str) -> PageResponse {
    let mut r = html(layout(viewer, "Error", html! { p.error { (message) } }));
    r.status = status;
    r
}

/// ns since the Unix epoch as `2026-11-23 10:15:27.968` (UTC).
pub(super) fn time_of(ns: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) else {
        return ns.to_string();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Milliseconds, to a useful precision.
pub(super) fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.3} ms")
    }
}

/// ns as milliseconds.
pub(super) fn ns_ms(ns: u64) -> String {
    ms(ns as f64 / 1e6)
}

pub(super) use crate::vocab::human_bytes as bytes;

/// The CSS class of a status: `s2`, `s4`, `s5`…, `err` without one.
pub(super) fn status_class(status: Option<u16>, failed: bool) -> &'static str {
    match status {
        None if failed => "err",
        None => "none",
        Some(s) if s >= 500 => "s5",
        Some(s) if s >= 400 => "s4",
        Some(s) if s >= 300 => "s3",
        Some(_) => "s2",
    }
}
