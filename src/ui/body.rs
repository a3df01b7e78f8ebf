//! How a recorded body is shown: JSON pretty-printed and foldable, text as text, images as
//! images, anything else as a hex dump. Every byte goes through maud's escaping.

use std::io::Read;

use base64::Engine;
use maud::{html, Markup};
use serde_json::Value;

use crate::model::{Body, Header, HeaderList};

/// Bodies larger than this are shown in part (the page must stay usable).
const SHOWN: usize = 256 << 10;
/// JSON larger than this is pretty-printed text rather than a tree of `<details>`.
const TREE: usize = 64 << 10;
/// Images up to this size are inlined as data URLs.
const IMAGE: usize = 4 << 20;
/// Bytes of a hex dump.
const HEX: usize = 4 << 10;

/// The body with its headers (for the type and encoding).
pub(super) fn body(headers: &[Header], body: &Body) -> Markup {
    if body.data.is_empty() {
        return html! { p.empty { @if body.size > 0 { "(" (body.size) " bytes, none stored)" } @else { "(empty)" } } };
    }
    let ctype = headers
        .header_str("content-type")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let encoding = headers
        .header_str("content-encoding")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let decoded = decompress(&encoding, &body.data);
    let data: &[u8] = decoded.as_deref().unwrap_or(&body.data);
    html! {
        @if body.truncated {
            p.note { "Cut at " (body.data.len()) " of " (body.size) " bytes when recorded." }
        }
        @if decoded.is_some() { p.note { "Shown decoded from " (encoding) "." } }
        (content(&ctype, data))
    }
}

/// The bytes of `data` shown by what they are.
pub(super) fn content(ctype: &str, data: &[u8]) -> Markup {
    if ctype.starts_with("image/") && data.len() <= IMAGE {
        let mime = ctype.split(';').next().unwrap_or("image/png").trim();
        // SVG can carry script: shown as text, never as an image of this origin.
        if mime != "image/svg+xml" {
            let b64 = base64::engine::general_purpose::STANDARD.encode(data);
            return html! { img.body-image alt="recorded image" src={ "data:" (mime) ";base64," (b64) }; };
        }
    }
    let json = (ctype.contains("json") || matches!(data.first(), Some(b'{' | b'[')))
        .then(|| serde_json::from_slice::<Value>(data).ok())
        .flatten();
    if let Some(v) = json {
        if data.len() <= TREE {
            return html! { div.json { (tree(None, &v)) } };
        }
        let text = serde_json::to_string_pretty(&v).unwrap_or_default();
        return html! { pre.body.json-text { (cut(&text)) } };
    }
    match std::str::from_utf8(data) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) =>
        {
            html! { pre.body.text { (cut(text)) } }
        }
        _ => hex(data),
    }
}

/// Text cut at [`SHOWN`] bytes (on a character boundary), with a note when cut.
fn cut(text: &str) -> String {
    if text.len() <= SHOWN {
        return text.to_string();
    }
    let mut end = SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} more bytes)", &text[..end], text.len() - end)
}

/// A JSON value as nested `<details>` (objects and arrays fold), scalars as spans.
fn tree(key: Option<&str>, v: &Value) -> Markup {
    let label = html! { @if let Some(k) = key { span.key { (k) } ": " } };
    match v {
        Value::Object(map) if !map.is_empty() => html! {
            details open { summary { (label) "{" span.count { (map.len()) " keys" } "}" }
                div.members { @for (k, v) in map { (tree(Some(k), v)) } } }
        },
        Value::Array(items) if !items.is_empty() => html! {
            details open { summary { (label) "[" span.count { (items.len()) " items" } "]" }
                div.members { @for (i, v) in items.iter().enumerate() { (tree(Some(&i.to_string()), v)) } } }
        },
        scalar => {
            let class = match scalar {
                Value::String(_) => "str",
                Value::Number(_) => "num",
                Value::Bool(_) => "bool",
                _ => "null",
            };
            html! { div.leaf { (label) span.(class) { (scalar.to_string()) } } }
        }
    }
}

/// A hex dump of the first [`HEX`] bytes: offset, 16 bytes, their printable characters.
pub(super) fn hex(data: &[u8]) -> Markup {
    let mut text = String::new();
    for (i, line) in data[..data.len().min(HEX)].chunks(16).enumerate() {
        let hexes: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let chars: String = line
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        text.push_str(&format!(
            "{:08x}  {:<47}  {chars}\n",
            i * 16,
            hexes.join(" ")
        ));
    }
    html! {
        pre.body.hex { (text) }
        @if data.len() > HEX { p.note { "First " (HEX) " of " (data.len()) " bytes." } }
    }
}

/// The body decoded from its `Content-Encoding`, when it is one flate2 knows and decodes.
fn decompress(encoding: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let limit = (SHOWN * 4) as u64;
    let read = match encoding {
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out),
        _ => return None,
    };
    read.ok().map(|_| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(ctype: &str, data: &[u8]) -> String {
        content(ctype, data).into_string()
    }

    #[test]
    fn recorded_markup_is_shown_as_text() {
        let html = shown("text/html", b"<script>alert('x')</script>");
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert('x')&lt;/script&gt;"),
            "{html}"
        );
        let json = shown("application/json", br#"{"<b>":"</details><script>"}"#);
        assert!(
            !json.contains("<script>") && !json.contains("<b>"),
            "{json}"
        );
        assert!(json.contains("&lt;/details&gt;&lt;script&gt;"), "{json}");
        // An SVG image could run script: text, not an <img>.
        let svg = shown("image/svg+xml", b"<svg onload=alert(1)></svg>");
        assert!(!svg.contains("<img") && !svg.contains("<svg"), "{svg}");
    }

    #[test]
    fn each_kind_of_body_has_its_view() {
        let json = shown("application/json", br#"{"users":[{"id":1}]}"#);
        assert!(json.contains("<details open>"), "{json}");
        assert!(json.contains("1 items"), "{json}");
        let png = shown("image/png", &[0x89, b'P', b'N', b'G']);
        assert!(
            png.contains("src=\"data:image/png;base64,iVBORw==\""),
            "{png}"
        );
        let bin = shown("application/octet-stream", &[0, 1, 2, 0xff]);
        assert!(bin.contains("00000000  00 01 02 ff"), "{bin}");
        let text = shown("text/plain", b"hello\nworld");
        assert!(
            text.contains("<pre class=\"body text\">hello\nworld</pre>"),
            "{text}"
        );
    }
}
