//! The control center of a running replay: mode cards, latency controls, presets, rules and
//! counter reset, and the live panels. The page is a skeleton; `assets/ui.js` fills it from
//! the admin API at the same origin (`/api/state`, `/api/rules`, the `/api/live` event
//! stream) and sends every change there as JSON, as `mf ctl` does.

use maud::{html, Markup};

use super::page;
use super::Viewer;
use crate::net::pages::PageResponse;

/// One knob of a mode card: the scenario field, its label and its default.
type Knob = (&'static str, &'static str, &'static str);

/// The modes and the knobs each card offers (the rest keep the mode's defaults).
const MODES: [(&str, &str, &[Knob]); 4] = [
    ("healthy", "Answers as recorded.", &[]),
    (
        "degraded",
        "Slower answers.",
        &[("latency_multiplier", "latency ×", "3")],
    ),
    (
        "error",
        "A share of requests fail.",
        &[
            ("error_rate", "error rate", "0.1"),
            ("error_status", "statuses", "500,502,503"),
        ],
    ),
    (
        "chaos",
        "Errors, timeouts, resets and spikes.",
        &[
            ("error_rate", "error rate", "0.1"),
            ("timeout_rate", "timeout rate", "0.02"),
            ("reset_rate", "reset rate", "0.02"),
        ],
    ),
];

pub(super) fn page(viewer: &Viewer) -> PageResponse {
    page::html(page::layout(viewer, "Control center", view()))
}

fn view() -> Markup {
    html! {
        div #control {
            p.status #control-status { "Connecting to the replay…" }
            section.cards {
                @for (mode, what, knobs) in MODES {
                    div.card data-mode=(mode) id={ "mode-" (mode) } {
                        h3 { (mode) }
                        p { (what) }
                        @for (field, label, default) in knobs {
                            label { (label) " " input type="text" size="10" data-field=(field) value=(default); }
                        }
                        button type="button" data-apply-mode=(mode) id={ "apply-" (mode) } { "Switch to " (mode) }
                    }
                }
            }
            section.live {
                h2 { "Live" }
                div.row {
                    div.panel { h3 { "Requests / s" } p.big #live-rate { "–" } svg #spark-rate width="300" height="60" viewBox="0 0 300 60" {} }
                    div.panel { h3 { "Errors and faults / s" } p.big #live-errors { "–" } svg #spark-errors width="300" height="60" viewBox="0 0 300 60" {} }
                    div.panel { h3 { "WebSocket connections" } p.big #live-ws { "–" } p { "mode " span #live-mode { "–" } } p #live-totals {} }
                }
                div.panel { h3 { "Latency histogram" } svg #latency-histogram width="640" height="140" viewBox="0 0 640 140" {} }
            }
            section.row {
                div.panel {
                    h2 { "Latency" }
                    label { "mode " input #latency-mode type="text" placeholder="none, recorded, fixed:50ms, scale:2"; }
                    label { "jitter " input #latency-jitter type="text" size="8" placeholder="10ms"; }
                    label { "bandwidth (bytes/s) " input #latency-bandwidth type="text" size="10"; }
                    button type="button" #apply-latency { "Apply latency" }
                }
                div.panel {
                    h2 { "Presets" }
                    div #presets {}
                }
                div.panel {
                    h2 { "Counters" }
                    p { "Sequence and rule counters start over; recorded answers play from the first again." }
                    button type="button" #reset { "Reset counters" }
                }
            }
            section.panel {
                h2 { "Rules" }
                p { "JSON or YAML, as in the config file; replacing takes effect at once." }
                textarea #rules rows="6" cols="100" spellcheck="false" {}
                br;
                button type="button" #apply-rules { "Replace rules" }
                span #rules-status {}
            }
        }
    }
}
