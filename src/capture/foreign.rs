//! Recordings made by other tools, read into [`Exchange`]s: HAR 1.2 files (browser dev
//! tools, Charles, Fiddler) and mitmproxy flow files. Told apart by content, never by name.
//!
//! Each reader parses the whole file before returning anything, so a broken file stops the
//! import before a single exchange reaches the recording.

use crate::model::Exchange;

/// The kinds of file `mf import` reads besides packet captures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignFormat {
    /// HTTP Archive 1.2 (JSON).
    Har,
    /// mitmproxy's flow file (tnetstring dictionaries).
    MitmproxyFlows,
}

impl ForeignFormat {
    /// What `data` (the first bytes of a file will do) is, if it is one of these; `None` for
    /// anything else (a packet capture, or garbage for the capture reader to refuse).
    pub fn detect(data: &[u8]) -> Option<ForeignFormat> {
        const CAPTURE_MAGICS: [[u8; 4]; 5] = [
            [0xd4, 0xc3, 0xb2, 0xa1],
            [0xa1, 0xb2, 0xc3, 0xd4],
            [0x4d, 0x3c, 0xb2, 0xa1],
            [0xa1, 0xb2, 0x3c, 0x4d],
            [0x0a, 0x0d, 0x0d, 0x0a],
        ];
        if CAPTURE_MAGICS.iter().any(|m| data.starts_with(m)) {
            return None;
        }
        let text = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
        let first = text.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            return Some(ForeignFormat::Har);
        }
        super::tnetstring::looks_like(data).then_some(ForeignFormat::MitmproxyFlows)
    }

    /// The name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            ForeignFormat::Har => "HAR",
            ForeignFormat::MitmproxyFlows => "mitmproxy flow",
        }
    }

    /// Every exchange of the file `data`, in file order.
    ///
    /// # Errors
    /// Where the file is broken (line and column for JSON, byte offset for flows).
    pub fn read(self, data: &[u8]) -> Result<Vec<Exchange>, ForeignError> {
        match self {
            ForeignFormat::Har => super::har::read(data),
            ForeignFormat::MitmproxyFlows => super::mitm::read(data),
        }
    }
}

#[cfg(test)]
use super::foreign_fields::split_url;
pub use super::foreign_fields::ForeignError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_content() {
        assert_eq!(
            ForeignFormat::detect(b"  {\"log\""),
            Some(ForeignFormat::Har)
        );
        assert_eq!(
            ForeignFormat::detect(b"\xef\xbb\xbf{"),
            Some(ForeignFormat::Har)
        );
        assert_eq!(
            ForeignFormat::detect(b"1982:9:websocket;"),
            Some(ForeignFormat::MitmproxyFlows)
        );
        assert_eq!(ForeignFormat::detect(b"\xd4\xc3\xb2\xa1"), None);
        assert_eq!(ForeignFormat::detect(b"\x0a\x0d\x0d\x0a"), None);
    }

    #[test]
    fn urls_split() {
        let s = |u: &str| split_url(u);
        assert_eq!(
            s("https://a.test:8443/p/q?x=1#frag"),
            Ok(("https".into(), "a.test:8443".into(), "/p/q?x=1".into()))
        );
        assert_eq!(
            s("wss://a.test?x"),
            Ok(("https".into(), "a.test".into(), "/?x".into()))
        );
        assert!(s("ftp://a/b").is_err());
        assert!(s("nope").is_err());
    }
}
