//! Endpoints and patterns: the inferred templates with counts, status mix, latency
//! percentiles and schemas, then the sequence patterns (ordering, transitions, value flows,
//! retries) and the patterns `mf infer` stored in the recording.

use maud::{html, Markup};

use super::diagram;
use super::page::{self, bytes, ms};
use super::Viewer;
use crate::net::pages::PageResponse;
use crate::store::fixtures::{Endpoint, FixtureSet};
use crate::store::{ExchangeSummary, PatternRow};

pub(super) fn page(
    viewer: &Viewer,
    stored: Vec<PatternRow>,
    sample: &[ExchangeSummary],
) -> PageResponse {
    let content = match viewer.analysis() {
        Ok(set) => view(set, &stored),
        Err(e) => html! { p.error { "Inference failed: " (e) } },
    };
    let content = html! {
        (content)
        @if let Some(first) = sample.first() {
            h2 { "Sequence diagram of connection " (first.connection_id) }
            div.diagram { (diagram::svg(sample)) }
            details { summary { "Mermaid source" } pre { (diagram::mermaid(sample, false)) } }
        }
    };
    page::html(page::layout(viewer, "Endpoints & patterns", content))
}

fn view(set: &FixtureSet, stored: &[PatternRow]) -> Markup {
    let seq = &set.sequences;
    html! {
        p.summary { (set.index.exchanges) " exchanges, " (set.endpoints.len()) " endpoint templates." }
        table.list #endpoints {
            thead { tr {
                th { "method" } th { "template" } th { "count" } th { "statuses" }
                th { "p50" } th { "p95" } th { "p99" } th { "request" } th { "response" } th { "schema" }
            } }
            tbody { @for e in &set.endpoints { (endpoint(e)) } }
        }
        h2 { "Sequence patterns" }
        p { (seq.sessions) " sessions (told apart by " (seq.session_key) ")." }
        @if !seq.ordering.is_empty() {
            h3 { "Ordering" }
            table.list { thead { tr { th { "before" } th { "after" } th { "holds" } th { "confidence" } } }
                tbody { @for o in &seq.ordering { tr {
                    td { (o.before) } td { (o.after) } td.num { (o.holds) " / " (o.support) }
                    td.num { (format!("{:.0}%", o.confidence * 100.0)) }
                } } } }
        }
        @if !seq.transitions.is_empty() {
            h3 { "Transitions" }
            table.list { thead { tr { th { "from" } th { "to" } th { "count" } th { "probability" } } }
                tbody { @for t in &seq.transitions { tr {
                    td { (t.from) } td { (t.to) } td.num { (t.count) }
                    td.num { (format!("{:.0}%", t.probability * 100.0)) }
                } } } }
        }
        @if !seq.flows.is_empty() {
            h3 { "Value flows" }
            table.list { thead { tr { th { "from" } th { "field" } th { "to" } th { "where" } th { "count" } } }
                tbody { @for f in &seq.flows { tr {
                    td { (f.from) } td { code { (f.from_field) } } td { (f.to) }
                    td { code { (f.to_location) } } td.num { (f.count) }
                } } } }
        }
        @if !seq.retries.is_empty() {
            h3 { "Retries" }
            table.list { thead { tr { th { "endpoint" } th { "after" } th { "count" } } }
                tbody { @for r in &seq.retries { tr {
                    td { (r.endpoint) } td { (r.after) } td.num { (r.count) }
                } } } }
        }
        @if !stored.is_empty() {
            h3 { "Stored by mf infer" }
            ul.patterns { @for p in stored { li { span.kind { (p.kind) } " " (p.summary) } } }
        }
        p { "A sequence diagram of any connection, trace or time window: "
            a href="/diagram" { "Sequence diagram" } "." }
    }
}

fn endpoint(e: &Endpoint) -> Markup {
    let p = &e.profile;
    let lat = p.latency_ms.as_ref();
    let pct =
        |f: fn(&crate::store::fixtures::Latency) -> f64| lat.map_or("-".to_string(), |l| ms(f(l)));
    let total: u64 = p.statuses.values().sum::<u64>().max(1);
    html! {
        tr data-template=(e.template) {
            td { (e.method) }
            td.url { a href={ "/?path=" (glob_of(&e.template)) } { (e.template) } }
            td.num { (p.count) }
            td.statuses {
                @for (status, n) in &p.statuses {
                    @let class = match status.chars().next() { Some('5') | Some('e') => "s5", Some('4') => "s4", Some('3') => "s3", _ => "s2" };
                    span.badge.(class) title={ (n) " of " (total) } { (status) " ×" (n) }
                    " "
                }
            }
            td.num { (pct(|l| l.p50)) } td.num { (pct(|l| l.p95)) } td.num { (pct(|l| l.p99)) }
            td.num { (bytes(p.request_bytes.avg)) } td.num { (bytes(p.response_bytes.avg)) }
            td {
                @if e.request_schema.is_some() || !e.response_schemas.is_empty() {
                    details { summary { "schema" }
                        @if let Some(s) = &e.request_schema { h4 { "request" } pre { (pretty(s)) } }
                        @for (status, s) in &e.response_schemas { h4 { (status) } pre { (pretty(s)) } }
                    }
                }
            }
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// A template as the list's path glob: each `{param}` matches anything, percent-encoded for
/// the link.
fn glob_of(template: &str) -> String {
    let mut glob = String::new();
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_param = true;
                glob.push('*');
            }
            '}' => in_param = false,
            c if !in_param => glob.push(c),
            _ => {}
        }
    }
    percent_encoding::utf8_percent_encode(&glob, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn templates_link_to_their_exchanges() {
        assert_eq!(
            super::glob_of("/users/{id}/posts"),
            "%2Fusers%2F%2A%2Fposts"
        );
    }
}
