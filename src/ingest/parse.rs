//! Parse: raw RFC 5322 bytes → [`ParsedMail`], the one owned view of a mail
//! that the rest of ingest reads. Wraps mail-parser (charsets, RFC 2047,
//! RFC 2231) and html2text. Pure: no I/O, no clock, no store; never panics
//! on any input (a mail that cannot be parsed is an error, not a crash).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

/// One mailbox: a lower-cased address and an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub address: String,
    pub name: Option<String>,
}

impl Mailbox {
    pub fn new(address: &str, name: Option<&str>) -> Self {
        Mailbox {
            address: address.trim().to_ascii_lowercase(),
            name: name
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        }
    }

    /// `"Name" <addr>` or `addr`, for display and logs.
    pub fn display(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} <{}>", self.address),
            None => self.address.clone(),
        }
    }
}

/// An attachment or inline part that is not the body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub media_type: String,
    pub content_id: Option<String>,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

/// The parts of a mail that ingest cares about, owned and normalised.
#[derive(Debug, Clone, Default)]
pub struct ParsedMail {
    /// Message-ID without angle brackets; `None` when the mail has none.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub subject: String,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub date: Option<DateTime<Utc>>,
    /// Top-level headers in order: lower-cased name, unfolded raw value.
    pub headers: Vec<(String, String)>,
    /// The body as text: text/plain, or the HTML body through html2text.
    pub text: String,
    /// The HTML body where the mail has one (kept for quote detection).
    pub html: Option<String>,
    /// The top-level Content-Type, lower-cased `type/subtype`.
    pub content_type: String,
    /// Text of machine-readable report parts (message/delivery-status,
    /// text/rfc822-headers, the headers of an attached message/rfc822):
    /// what bounce handling reads to tie a bounce to our mail.
    pub report_parts: Vec<String>,
    pub attachments: Vec<Attachment>,
    /// sha256 of the raw bytes; the identity of a mail without Message-ID.
    pub raw_sha256: String,
}

impl ParsedMail {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, by case-insensitive name.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The identity used to make a second delivery a no-op: the
    /// Message-ID, or a content hash where there is none.
    pub fn dedup_key(&self) -> String {
        match &self.message_id {
            Some(id) => id.clone(),
            None => format!("sha256:{}", self.raw_sha256),
        }
    }

    /// Every Message-ID this mail points back to: In-Reply-To first, then
    /// References newest first, without duplicates.
    pub fn referenced_ids(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.in_reply_to
            .iter()
            .chain(self.references.iter().rev())
            .filter(|id| seen.insert(id.as_str()))
            .cloned()
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("the mail is empty")]
    Empty,
    #[error("the mail has no header section that can be parsed")]
    Unparsable,
}

/// Parses raw mail bytes. Tolerates an mbox `From ` first line and any mix
/// of line endings.
pub fn parse(raw: &[u8]) -> Result<ParsedMail, ParseError> {
    let raw_sha256 = hex::encode(Sha256::digest(raw));
    let body = strip_mbox_from_line(skip_blank_lines(raw));
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    // mail-parser 0.11 reaches a `debug_assert!` on some corrupt MIME
    // (spam/sa__nice_mime9.eml in the corpus panics in debug builds): a
    // panic inside the parser is an unparsable mail, never a crash.
    let message = std::panic::catch_unwind(|| MessageParser::default().parse(body))
        .ok()
        .flatten()
        .ok_or(ParseError::Unparsable)?;
    if message.parts.is_empty() || message.parts[0].headers.is_empty() {
        return Err(ParseError::Unparsable);
    }

    let headers = message
        .headers_raw()
        .map(|(name, value)| (name.to_ascii_lowercase(), unfold(value)))
        .collect();
    let html = message.body_html(0).map(|h| h.into_owned());
    let text = body_text(&message, html.as_deref());

    Ok(ParsedMail {
        message_id: message
            .message_id()
            .map(clean_id)
            .filter(|id| !id.is_empty()),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        subject: message.subject().unwrap_or_default().trim().to_string(),
        from: message
            .from()
            .and_then(|a| mailboxes(Some(a)).into_iter().next()),
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        reply_to: mailboxes(message.reply_to()),
        date: message
            .date()
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        headers,
        text,
        html,
        content_type: content_type_of(message.root_part()),
        report_parts: report_parts(&message),
        attachments: attachments(&message),
        raw_sha256,
    })
}

/// Whitespace-only lines before the header section (some exports start
/// with one) would read as an empty header section.
fn skip_blank_lines(raw: &[u8]) -> &[u8] {
    let mut rest = raw;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        if !rest[..end].iter().all(u8::is_ascii_whitespace) {
            break;
        }
        rest = &rest[end + 1..];
    }
    rest
}

fn strip_mbox_from_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|&b| b == b'\n') {
            Some(end) => &raw[end + 1..],
            None => raw,
        }
    } else {
        raw
    }
}

fn unfold(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim()
        .to_string()
}

fn id_list(value: &HeaderValue) -> Vec<String> {
    let ids: Vec<String> = match value {
        HeaderValue::Text(id) => vec![clean_id(id)],
        HeaderValue::TextList(ids) => ids.iter().map(|id| clean_id(id)).collect(),
        _ => Vec::new(),
    };
    ids.into_iter().filter(|id| !id.is_empty()).collect()
}

fn mailboxes(address: Option<&Address>) -> Vec<Mailbox> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .filter_map(|a| {
            let addr = a.address()?;
            addr.contains('@').then(|| Mailbox::new(addr, a.name()))
        })
        .collect()
}

fn content_type_of(part: &mail_parser::MessagePart) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".to_string(),
    }
}

/// Plain text wins; HTML goes through html2text only when there is no
/// plain part (mail-parser synthesises one from HTML, which we redo with
/// html2text for better structure).
fn body_text(message: &mail_parser::Message, html: Option<&str>) -> String {
    let has_plain = message
        .text_bodies()
        .any(|p| matches!(p.body, PartType::Text(_)));
    if has_plain {
        let parts: Vec<String> = message
            .text_bodies()
            .filter_map(|p| match &p.body {
                PartType::Text(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        return normalise_newlines(&parts.join("\n"));
    }
    match html {
        Some(html) => html_to_text(html),
        None => String::new(),
    }
}

/// HTML → readable plain text, never failing (a broken document yields
/// what could be read of it).
pub fn html_to_text(html: &str) -> String {
    let text = html2text::config::plain_no_decorate()
        .string_from_read(html.as_bytes(), 100)
        .unwrap_or_default();
    normalise_newlines(&text)
}

fn normalise_newlines(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

fn report_parts(message: &mail_parser::Message) -> Vec<String> {
    let mut out = Vec::new();
    for part in message.parts.iter().skip(1) {
        let ct = content_type_of(part);
        match (&part.body, ct.as_str()) {
            (PartType::Message(inner), _) => {
                let headers: Vec<String> = inner
                    .headers_raw()
                    .map(|(n, v)| format!("{n}: {}", unfold(v)))
                    .collect();
                out.push(headers.join("\n"));
            }
            (
                PartType::Text(t) | PartType::Html(t),
                "message/delivery-status" | "text/rfc822-headers" | "message/rfc822-headers",
            ) => out.push(t.to_string()),
            (
                PartType::Binary(b) | PartType::InlineBinary(b),
                "message/delivery-status" | "text/rfc822-headers" | "message/rfc822-headers",
            ) => out.push(String::from_utf8_lossy(b).into_owned()),
            _ => {}
        }
    }
    out
}

fn attachments(message: &mail_parser::Message) -> Vec<Attachment> {
    message
        .attachments()
        .filter_map(|part| {
            let bytes: Vec<u8> = match &part.body {
                PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
                PartType::Text(t) | PartType::Html(t) => t.as_bytes().to_vec(),
                PartType::Message(m) => m.raw_message().to_vec(),
                PartType::Multipart(_) => return None,
            };
            let media_type = content_type_of(part);
            let filename = part
                .attachment_name()
                .map(str::to_string)
                .unwrap_or_else(|| default_filename(&media_type));
            Some(Attachment {
                sha256: hex::encode(Sha256::digest(&bytes)),
                filename,
                media_type,
                content_id: part.content_id().map(clean_id),
                bytes,
            })
        })
        .collect()
}

fn default_filename(media_type: &str) -> String {
    match media_type {
        "message/rfc822" => "message.eml".to_string(),
        t if t.starts_with("image/") => format!("image.{}", &t[6..]),
        _ => "attachment.bin".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMPLE: &[u8] = b"From: Ann Example <Ann@Example.test>\r\n\
To: tickets@example.test\r\n\
Cc: Bob <bob@example.test>, carol@example.test\r\n\
Subject: =?UTF-8?Q?Printer_on_fire_=F0=9F=94=A5?=\r\n\
Message-ID: <abc@example.test>\r\n\
In-Reply-To: <x1@example.test>\r\n\
References: <x0@example.test>\r\n <x1@example.test>\r\n\
Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\
\r\n\
Hello there.\r\n";

    #[test]
    fn parses_the_fields_ingest_reads() {
        let mail = parse(SIMPLE).unwrap();
        assert_eq!(mail.message_id.as_deref(), Some("abc@example.test"));
        assert_eq!(mail.subject, "Printer on fire 🔥");
        let from = mail.from.clone().unwrap();
        assert_eq!(from.address, "ann@example.test");
        assert_eq!(from.name.as_deref(), Some("Ann Example"));
        assert_eq!(mail.cc.len(), 2);
        assert_eq!(mail.in_reply_to, vec!["x1@example.test"]);
        assert_eq!(mail.references, vec!["x0@example.test", "x1@example.test"]);
        assert_eq!(
            mail.referenced_ids(),
            vec!["x1@example.test", "x0@example.test"]
        );
        assert_eq!(mail.text.trim(), "Hello there.");
        assert_eq!(
            mail.header("SUBJECT").map(|s| s.contains("UTF-8")),
            Some(true)
        );
        assert!(mail.date.is_some());
    }

    #[test]
    fn a_mail_without_message_id_is_keyed_by_its_hash() {
        let raw = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let mail = parse(raw).unwrap();
        assert!(mail.message_id.is_none());
        assert!(mail.dedup_key().starts_with("sha256:"));
    }

    #[test]
    fn html_only_mail_becomes_text() {
        let raw = b"From: a@example.test\r\nSubject: hi\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>world</b></p>\r\n";
        let mail = parse(raw).unwrap();
        assert!(mail.text.contains("Hello world"), "{:?}", mail.text);
        assert!(mail.html.is_some());
    }

    #[test]
    fn empty_input_is_an_error_not_a_panic() {
        assert!(parse(b"").is_err());
        assert!(parse(b"\r\n\r\n").is_err());
    }

    #[test]
    fn leading_blank_lines_are_skipped() {
        let raw = b"   \r\n\nFrom: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let mail = parse(raw).unwrap();
        assert_eq!(mail.subject, "hi");
        assert_eq!(mail.from.unwrap().address, "a@example.test");
    }

    #[test]
    fn mbox_from_line_is_skipped() {
        let raw = b"From someone@example.test Mon Jan  1 00:00:00 2024\nFrom: a@example.test\nSubject: hi\n\nbody\n";
        let mail = parse(raw).unwrap();
        assert_eq!(mail.subject, "hi");
    }
}
