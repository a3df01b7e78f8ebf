//! JUnit XML, as CI servers read it: a `testsuite` of one `testcase` per exchange.
//!
//! Written by hand: it is three elements and their escaping, less than a dependency.

use std::io::{self, Write};

use serde_json::Value;

/// Text made safe for XML attributes and content: the five special characters escaped, and
/// characters XML 1.0 forbids (most controls) replaced.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn head(w: &mut impl Write, tests: u64, failures: u64, errors: u64) -> io::Result<()> {
    writeln!(w, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        w,
        r#"<testsuites name="mf" tests="{tests}" failures="{failures}" errors="{errors}">"#
    )?;
    writeln!(
        w,
        r#"<testsuite name="mf" tests="{tests}" failures="{failures}" errors="{errors}">"#
    )
}

pub(super) fn tail(w: &mut impl Write) -> io::Result<()> {
    writeln!(w, "</testsuite>\n</testsuites>")
}

/// One testcase from a report entry (see `report::record`).
pub(super) fn testcase(w: &mut impl Write, e: &Value) -> io::Result<()> {
    let s = |k: &str| e[k].as_str().unwrap_or("");
    let name = escape(&format!("{} {}", s("method"), s("path")));
    let class = escape(s("endpoint"));
    let time = e["latency_now_ms"]
        .as_f64()
        .map_or(String::new(), |ms| format!(r#" time="{:.6}""#, ms / 1000.0));
    write!(w, r#"  <testcase name="{name}" classname="{class}"{time}"#)?;
    match s("outcome") {
        "differ" => {
            writeln!(w, ">")?;
            for d in e["differences"].as_array().into_iter().flatten() {
                let line = format!(
                    "{}: {} → {}",
                    d["path"].as_str().unwrap_or(""),
                    d["recorded"].as_str().unwrap_or(""),
                    d["now"].as_str().unwrap_or("")
                );
                let line = escape(&line);
                writeln!(
                    w,
                    r#"    <failure type="difference" message="{line}">{line}</failure>"#
                )?;
            }
            writeln!(w, "  </testcase>")
        }
        "failed" => {
            let kind = escape(e["kind"].as_str().unwrap_or("failed"));
            let reason = escape(s("reason"));
            writeln!(w, ">")?;
            writeln!(
                w,
                r#"    <error type="{kind}" message="{reason}">{reason}</error>"#
            )?;
            writeln!(w, "  </testcase>")
        }
        _ => writeln!(w, "/>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
        assert_eq!(escape("a\u{1}b\nc"), "a\u{FFFD}b\nc");
    }
}
