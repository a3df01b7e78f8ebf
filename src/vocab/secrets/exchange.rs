//! Redacting a whole exchange: its target, headers, trailers and bodies, request and response.

use crate::model::{Body, Exchange, Header, HeaderList};

use super::Redaction;

/// Redacts `ex` in place: the query of the target, secret headers and trailers (gRPC
/// metadata included), secret fields of JSON, form and multipart bodies; then scrubs every
/// secret found from the other text of the exchange (a token echoed in a body). Returns how
/// many values were replaced.
///
/// Stored headers stay as on the wire except for the redacted values: `Content-Length`
/// keeps the length that was sent, while a complete body's `size` becomes the length of the
/// stored (redacted) bytes; replay frames what it sends from the stored bytes. A complete
/// gzip body is decoded, redacted and encoded again; other encodings (br, zstd…) are left as
/// they are.
pub fn redact_exchange(ex: &mut Exchange, red: &mut Redaction<'_>) -> u64 {
    let before = red.count;
    let target = &mut ex.request.target;
    if let Some((path, query)) = target.split_once('?') {
        if let Some(q) = red.query(query) {
            *target = format!("{path}?{q}").into();
        }
    }
    headers(&mut ex.request.headers, red);
    headers(&mut ex.request.trailers, red);
    body(&mut ex.request.body, &ex.request.headers, red);
    if let Some(resp) = &mut ex.response {
        headers(&mut resp.headers, red);
        headers(&mut resp.trailers, red);
        body(&mut resp.body, &resp.headers, red);
    }
    if red.count > before {
        scrub(ex, red);
    }
    red.count - before
}

fn headers(list: &mut [Header], red: &mut Redaction<'_>) {
    for h in list.iter_mut() {
        if let Some(v) = red.header_value(&h.name, &h.value) {
            h.value = v.into();
        }
    }
}

/// Decoded gzip bodies larger than this are left as they are (a bound on memory).
const MAX_DECODED: u64 = 16 << 20;

/// How the stored bytes encode the representation.
enum Coding {
    Identity,
    Gzip,
    /// Something this module does not rewrite.
    Other,
}

fn coding(b: &Body, headers: &[Header]) -> Coding {
    match headers.header("content-encoding").map(<[u8]>::trim_ascii) {
        None => Coding::Identity,
        Some(e) if e.is_empty() || e.eq_ignore_ascii_case(b"identity") => Coding::Identity,
        Some(e) if e.eq_ignore_ascii_case(b"gzip") && !b.truncated => Coding::Gzip,
        Some(_) => Coding::Other,
    }
}

/// Applies `edit` to the body's representation (gunzipped when gzip) and stores the result
/// (gzipped again) when it changed anything.
fn edit_body(b: &mut Body, headers: &[Header], edit: impl FnOnce(&[u8]) -> Option<Vec<u8>>) {
    match coding(b, headers) {
        Coding::Identity => {
            if let Some(data) = edit(&b.data) {
                set_data(b, data);
            }
        }
        Coding::Gzip => {
            use std::io::{Read, Write};
            let mut decoded = Vec::new();
            let read = flate2::read::MultiGzDecoder::new(&b.data[..])
                .take(MAX_DECODED + 1)
                .read_to_end(&mut decoded);
            if read.is_err() || decoded.len() as u64 > MAX_DECODED {
                return;
            }
            let Some(data) = edit(&decoded) else { return };
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            if enc.write_all(&data).is_ok() {
                if let Ok(encoded) = enc.finish() {
                    set_data(b, encoded);
                }
            }
        }
        Coding::Other => {}
    }
}

/// Redacts a body by its media type. The type is read in place (a copy of it for every
/// request and response showed in the capture profile); a type that is not UTF-8 is no
/// type this module parses.
fn body(b: &mut Body, headers: &[Header], red: &mut Redaction<'_>) {
    let ct = headers
        .header("content-type")
        .map(|v| std::str::from_utf8(v).map_or("", str::trim));
    edit_body(b, headers, |data| red.body(ct.unwrap_or(""), data));
}

/// Replaces the stored bytes, keeping `size` and the chunk table consistent with them: a
/// complete body's size is its stored length; a truncated one's moves by the same amount;
/// the last chunk absorbs the change.
fn set_data(b: &mut Body, data: Vec<u8>) {
    let old = b.data.len() as u64;
    let new = data.len() as u64;
    b.size = if b.truncated {
        (b.size + new).saturating_sub(old)
    } else {
        new
    };
    let chunked: u64 = b.chunks.iter().map(|c| c.len).sum();
    if chunked == old {
        if let Some(last) = b.chunks.last_mut() {
            match (last.len + new).checked_sub(old) {
                Some(len) => last.len = len,
                None => b.chunks.clear(),
            }
        }
    }
    b.data = data.into();
}

/// Replaces secrets found elsewhere in the exchange wherever they reappear in its text.
fn scrub(ex: &mut Exchange, red: &Redaction<'_>) {
    if let Some(t) = red.scrub(ex.request.target.as_bytes()) {
        ex.request.target = crate::model::Text::from_utf8_lossy(&t);
    }
    let scrub_headers = |list: &mut Vec<Header>| {
        for h in list.iter_mut() {
            if let Some(v) = red.scrub(&h.value) {
                h.value = v.into();
            }
        }
    };
    scrub_headers(&mut ex.request.headers);
    scrub_headers(&mut ex.request.trailers);
    scrub_text_body(&mut ex.request.body, &ex.request.headers, red);
    if let Some(resp) = &mut ex.response {
        scrub_headers(&mut resp.headers);
        scrub_headers(&mut resp.trailers);
        scrub_text_body(&mut resp.body, &resp.headers, red);
    }
    if let Some(e) = &mut ex.error {
        if let Some(m) = red.scrub(e.message.as_bytes()) {
            e.message = String::from_utf8_lossy(&m).into_owned();
        }
    }
}

/// Only text bodies are scrubbed: in a binary format (protobuf, images) a changed length
/// would break the framing.
fn scrub_text_body(b: &mut Body, headers: &[Header], red: &Redaction<'_>) {
    edit_body(b, headers, |data| {
        std::str::from_utf8(data).ok()?;
        red.scrub(data)
    });
}
