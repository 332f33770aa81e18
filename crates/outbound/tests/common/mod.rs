//! Helpers shared by the integration tests: reading back what the mailers
//! produced, as a receiver would.
#![allow(dead_code)]

use base64::Engine;
use domain::events::Email;

/// A parsed RFC 5322 message: headers in order (unfolded) and the raw body.
pub struct Eml {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Eml {
    /// Parses `raw`, insisting on CRLF line ends, `Name: value` header
    /// lines (or continuation lines) and an empty line before the body.
    pub fn parse(raw: &[u8]) -> Eml {
        let text = std::str::from_utf8(raw).expect("message is UTF-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            assert!(
                !line.contains('\n') && !line.contains('\r'),
                "bare CR/LF in {line:?}"
            );
            if line.starts_with(' ') || line.starts_with('\t') {
                let last = headers.last_mut().expect("continuation after a header");
                last.1.push_str(line);
            } else {
                let (name, value) = line.split_once(':').expect("header line has a colon");
                assert!(
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
                    "bad header name {name:?}"
                );
                headers.push((name.to_owned(), value.trim_start().to_owned()));
            }
        }
        Eml {
            headers,
            body: body.to_owned(),
        }
    }

    /// The single header of that name (case-insensitive); panics if absent
    /// or repeated.
    pub fn header(&self, name: &str) -> &str {
        let found: Vec<&str> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(found.len(), 1, "header {name}: {found:?}");
        found[0]
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The body with its transfer encoding undone.
    pub fn text(&self) -> String {
        match self
            .header("Content-Transfer-Encoding")
            .to_ascii_lowercase()
            .as_str()
        {
            "quoted-printable" => decode_quoted_printable(&self.body),
            "base64" => {
                let compact: String = self.body.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64 body");
                String::from_utf8(bytes).expect("UTF-8 body")
            }
            _ => self.body.clone(),
        }
    }
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=` and `?q?`); the
/// whitespace between two adjacent encoded words is dropped, per the RFC.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut previous_was_word = false;
    let mut pending_space = String::new();
    let mut rest = value;
    while !rest.is_empty() {
        let ws_len = rest.len() - rest.trim_start().len();
        let (ws, after) = rest.split_at(ws_len);
        pending_space.push_str(ws);
        rest = after;
        if rest.is_empty() {
            break;
        }
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        let (token, after) = rest.split_at(end);
        rest = after;
        match decode_word(token) {
            Some(decoded) => {
                if !previous_was_word {
                    out.push_str(&pending_space);
                }
                out.push_str(&decoded);
                previous_was_word = true;
            }
            None => {
                out.push_str(&pending_space);
                out.push_str(token);
                previous_was_word = false;
            }
        }
        pending_space.clear();
    }
    out.push_str(&pending_space);
    out
}

fn decode_word(token: &str) -> Option<String> {
    let inner = token.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let charset = parts.next()?;
    let encoding = parts.next()?;
    let text = parts.next()?;
    assert!(charset.eq_ignore_ascii_case("utf-8"), "charset {charset}");
    let bytes = match encoding {
        "b" | "B" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("base64 word"),
        "q" | "Q" => decode_quoted_printable(&text.replace('_', " ")).into_bytes(),
        other => panic!("encoding {other}"),
    };
    Some(String::from_utf8(bytes).expect("UTF-8 word"))
}

pub fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8 text")
}

pub fn email(key: &str, to: &str, subject: &str, text: &str) -> Email {
    Email {
        key: key.into(),
        to: to.into(),
        subject: subject.into(),
        text: text.into(),
    }
}
