//! Parse: raw RFC 5322 bytes → [`ParsedMail`], the one owned view of a mail
//! that the rest of ingest reads. Wraps mail-parser (charsets, RFC 2047,
//! RFC 2231) and html2text. Pure: no I/O, no clock, no store; never panics
//! on any input (a mail that cannot be parsed is an error, not a crash).

use std::collections::BTreeSet;

use crate::domain::{Address, AddressError};
use crate::tokens::sha256_hex;
use chrono::{DateTime, Utc};
use mail_parser::{Address as HeaderAddress, HeaderValue, MessageParser, MimeHeaders, PartType};

use super::span::{RawSpan, locate};
use super::strip;

/// One mailbox: a checked, lower-cased address and an optional display
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub address: Address,
    pub name: Option<String>,
}

impl Mailbox {
    /// Line breaks, tabs and other control characters in a display name
    /// (a broken header can fold them in) become single spaces: a name
    /// goes into the headers of our replies.
    pub fn new(address: Address, name: Option<&str>) -> Self {
        Mailbox {
            address,
            name: name
                .map(|n| {
                    n.split(|c: char| c.is_whitespace() || c.is_control())
                        .filter(|w| !w.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .filter(|n| !n.is_empty()),
        }
    }

    /// A mailbox from an address not checked yet (a header, a stored row).
    pub fn parse(address: &str, name: Option<&str>) -> Result<Self, AddressError> {
        Ok(Mailbox::new(Address::parse(address)?, name))
    }

    /// `"Name" <addr>` or `addr`, for display and logs.
    pub fn display(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} <{}>", self.address),
            None => self.address.to_string(),
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
    /// Where `bytes` sit in the raw mail, encoded: the store then keeps
    /// them there only (see [`super::span`]).
    pub span: Option<RawSpan>,
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
    /// Addresses of From/To/Cc/Reply-To that were not valid and were
    /// left out (the first 20, at most 100 characters of each), for the agents to see.
    pub dropped_addresses: Vec<String>,
    pub date: Option<DateTime<Utc>>,
    /// Top-level headers in order: lower-cased name, unfolded raw value.
    pub headers: Vec<(String, String)>,
    /// The body as text: text/plain, or the HTML body through html2text
    /// (its quote containers as `> ` lines after the new text).
    pub text: String,
    /// The HTML body where the mail has one (never a converted text part).
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
            None => content_key(&self.raw_sha256),
        }
    }

    /// The Message-IDs this mail points back to: In-Reply-To first, then
    /// References newest first, without duplicates, at most
    /// [`MAX_REFERENCES_READ`] (each costs a lookup and a signature check;
    /// a hostile mail carried 200,000).
    pub fn referenced_ids(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.in_reply_to
            .iter()
            .chain(self.references.iter().rev())
            .filter(|id| seen.insert(id.as_str()))
            .take(MAX_REFERENCES_READ)
            .cloned()
            .collect()
    }
}

/// How many of a mail's references threading reads (the newest ones).
pub const MAX_REFERENCES_READ: usize = 100;

/// The dedup key of a mail known by its content, not a Message-ID (one
/// without any, or one that cannot be read): `sha256:` and the raw hash.
pub fn content_key(raw_sha256: &str) -> String {
    format!("sha256:{raw_sha256}")
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
    let raw_sha256 = sha256_hex(raw);
    let body = strip_mbox_from_line(skip_blank_lines(raw));
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    // mail-parser 0.11 reaches a `debug_assert!` on some corrupt MIME
    // (spam/sa__nice_mime9.eml in the corpus panics in debug builds): a
    // panic inside the parser is an unparsable mail, never a crash.
    let mut message = std::panic::catch_unwind(|| MessageParser::default().parse(body))
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
    let html = html_body(&message);
    let text = body_text(&message, html.as_deref());
    let mut dropped = Vec::new();

    let mut parsed = ParsedMail {
        message_id: message
            .message_id()
            .map(clean_id)
            .filter(|id| !id.is_empty()),
        in_reply_to: id_list(message.in_reply_to()),
        references: id_list(message.references()),
        subject: message.subject().unwrap_or_default().trim().to_string(),
        from: mailboxes(message.from(), &mut dropped).into_iter().next(),
        to: mailboxes(message.to(), &mut dropped),
        cc: mailboxes(message.cc(), &mut dropped),
        reply_to: mailboxes(message.reply_to(), &mut dropped),
        dropped_addresses: noted(dropped),
        date: message
            .date()
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        headers,
        text,
        html,
        content_type: content_type_of(message.root_part()),
        report_parts: report_parts(&message),
        attachments: Vec::new(),
        raw_sha256,
    };
    // `body` is a suffix of `raw`: the parser's offsets count from it.
    parsed.attachments = attachments(raw, raw.len() - body.len(), &mut message);
    Ok(parsed)
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

/// The mailboxes of an address header. An address that is not one we
/// could ever write to (`x@`, `a@b@c.test`, a quoted local part with a
/// blank) is dropped here, once, and named in `dropped`: kept, it would
/// make every later mail to its ticket fail to compose.
fn mailboxes(address: Option<&HeaderAddress>, dropped: &mut Vec<String>) -> Vec<Mailbox> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .filter_map(|a| {
            let addr = a.address()?;
            let mailbox = Mailbox::parse(addr, a.name()).ok();
            if mailbox.is_none() && dropped.len() < MAX_DROPPED_SHOWN {
                dropped.push(addr.chars().take(MAX_SHOWN_ADDRESS).collect());
            }
            mailbox
        })
        .collect()
}

/// Logs the addresses [`mailboxes`] dropped, once per mail.
fn noted(dropped: Vec<String>) -> Vec<String> {
    if !dropped.is_empty() {
        tracing::warn!(
            "A mail named addresses that are not valid; they were left out: {}",
            dropped.join(", ")
        );
    }
    dropped
}

/// How much of a dropped address, and how many of them, are kept for the
/// note: a hostile header may carry thousands.
const MAX_SHOWN_ADDRESS: usize = 100;
const MAX_DROPPED_SHOWN: usize = 20;

fn content_type_of(part: &mail_parser::MessagePart) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => "text/plain".to_string(),
    }
}

/// The HTML body: the text/html parts among the bodies (mail-parser lists
/// a text/plain part there too when it comes first, and a converted text
/// is no HTML). Where there is none, the first inline text/html part: the
/// root of a `multipart/related` that does not come first (MHTML).
fn html_body(message: &mail_parser::Message) -> Option<String> {
    fn as_html<'m>(p: &'m mail_parser::MessagePart<'_>) -> Option<&'m str> {
        match &p.body {
            PartType::Html(h) => Some(h.as_ref()),
            _ => None,
        }
    }
    let bodies = message
        .html_bodies()
        .filter_map(as_html)
        .take(MAX_BODY_PARTS);
    let (joined, _) = join_capped(bodies, "\n", MAX_HTML_READ_BYTES);
    if !joined.is_empty() {
        return Some(joined);
    }
    message
        .parts
        .iter()
        .filter(|p| !p.content_disposition().is_some_and(|d| d.is_attachment()))
        .find_map(as_html)
        .map(|h| join_capped([h], "", MAX_HTML_READ_BYTES).0)
}

/// The most of a mail's HTML that is read (the rest stays in the raw mail):
/// enough for any letter, and a bound on what one mail can make us hold.
const MAX_HTML_READ_BYTES: usize = 4 * 1024 * 1024;

/// The most of a mail's text that is kept as its text (stored, shown,
/// stripped); a longer one ends with [`TEXT_CUT_NOTE`]. The raw mail is
/// kept whole.
pub const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;

/// What ends a text cut at [`MAX_TEXT_BYTES`].
pub const TEXT_CUT_NOTE: &str =
    "\n\n[… the text goes on; it is too long to show here. The whole mail is kept as received.]";

/// `parts` joined with `separator`, at most `max` bytes (cut at a
/// character boundary), and whether anything was left out. Copies no more
/// than it keeps.
fn join_capped<'a>(
    parts: impl IntoIterator<Item = &'a str>,
    separator: &str,
    max: usize,
) -> (String, bool) {
    let mut out = String::new();
    for (i, part) in parts.into_iter().enumerate() {
        let separator = if i == 0 { "" } else { separator };
        let room = max.saturating_sub(out.len());
        if separator.len() + part.len() > room {
            let mut end = room.saturating_sub(separator.len());
            while end > 0 && !part.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(separator);
            out.push_str(&part[..end]);
            return (out, true);
        }
        out.push_str(separator);
        out.push_str(part);
    }
    (out, false)
}

/// `text` at most [`MAX_TEXT_BYTES`], with [`TEXT_CUT_NOTE`] when cut.
fn capped_text(text: String, already_cut: bool) -> String {
    if text.len() <= MAX_TEXT_BYTES && !already_cut {
        return text;
    }
    let (mut kept, _) = join_capped([text.as_str()], "", MAX_TEXT_BYTES);
    kept.push_str(TEXT_CUT_NOTE);
    kept
}

/// Body parts joined into the text at most: a mail of 100,000 text/html
/// parts is no letter (the rest stay in the raw mail).
const MAX_BODY_PARTS: usize = 100;

/// Plain text wins; HTML goes through html2text only when there is no
/// plain part with text in it (mail-parser synthesises one from HTML,
/// which we redo with html2text for better structure; an empty text/plain
/// alternative next to the HTML, as Apple Mail sends, does not count).
fn body_text(message: &mail_parser::Message, html: Option<&str>) -> String {
    let plain: Vec<&str> = message
        .text_bodies()
        .filter_map(|p| match &p.body {
            PartType::Text(t) => Some(t.as_ref()),
            _ => None,
        })
        .take(MAX_BODY_PARTS)
        .collect();
    let has_text = plain.iter().any(|t| !t.trim().is_empty());
    match html {
        Some(html) if !has_text => capped_text(html_body_text(html), false),
        _ => {
            let (joined, cut) = join_capped(plain, "\n", MAX_TEXT_BYTES);
            capped_text(normalise_newlines(&joined), cut)
        }
    }
}

/// An HTML body as text. The quote containers of Gmail, Apple Mail,
/// Thunderbird and Outlook are cut out before html2text and follow the new
/// text as `> ` lines, so that quote stripping keeps them with the quoted
/// history (html2text's plain output would not mark them). A mail that is
/// nothing but a quote (a bare forward) keeps it all.
fn html_body_text(html: &str) -> String {
    if html.len() > MAX_HTML2TEXT_BYTES {
        return html_to_text(html);
    }
    let Some(cleaned) = strip::remove_html_quotes(html) else {
        return html_to_text(html);
    };
    let new_text = html_to_text(&cleaned);
    if new_text.trim().is_empty() {
        return html_to_text(html);
    }
    let quoted: Vec<String> = html_to_text(removed_html(html, &cleaned))
        .lines()
        .map(|l| format!("> {l}").trim_end().to_string())
        .collect();
    format!("{}\n\n{}\n", new_text.trim_end(), quoted.join("\n"))
}

/// What `remove_html_quotes` cut from `html` to make `cleaned`: exact for
/// one cut (the usual case: one Gmail quote, one Outlook history), the
/// span from the first cut to the last otherwise.
fn removed_html<'a>(html: &'a str, cleaned: &str) -> &'a str {
    let (h, c) = (html.as_bytes(), cleaned.as_bytes());
    let cut = h.len().saturating_sub(c.len());
    let prefix = h.iter().zip(c).take_while(|(a, b)| a == b).count();
    // The common prefix may run into the cut where the cut and what follows
    // it start alike; a cut starts at a tag, so `<` positions go first.
    let fits = |r: usize| h.get(r + cut..) == c.get(r..);
    let back = prefix.saturating_sub(64);
    let start = (back..=prefix)
        .rev()
        .find(|&r| h.get(r) == Some(&b'<') && fits(r))
        .or_else(|| (back..=prefix).rev().find(|&r| fits(r)));
    if let Some(r) = start
        && let Some(removed) = html.get(r..r + cut)
    {
        return removed;
    }
    let suffix = h
        .iter()
        .rev()
        .zip(c.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let end = h.len().saturating_sub(suffix).max(prefix);
    html.get(prefix..end).unwrap_or_default()
}

/// HTML → readable plain text, never failing (a broken document yields
/// what could be read of it).
pub fn html_to_text(html: &str) -> String {
    // html5ever scans its stack of open elements on every start tag, so a
    // hostile mail with tens of thousands of nested elements takes minutes.
    // Such a document gets plain tag stripping instead.
    // html2text builds a DOM of the whole document, over a hundred times
    // its size (4.8 MB of paragraphs peaked at 637 MB, 20 MB at 2.7 GB):
    // a large document gets the linear tag stripping too.
    if html.len() > MAX_HTML2TEXT_BYTES || nesting_depth(html) > MAX_HTML_DEPTH {
        return normalise_newlines(&strip_tags(html));
    }
    let text = html2text::config::plain_no_decorate()
        .string_from_read(html.as_bytes(), 100)
        .unwrap_or_default();
    normalise_newlines(&text)
}

/// HTML larger than this skips html2text (and the quote cutting before
/// it): few real letters come near it, and their text reads well stripped.
const MAX_HTML2TEXT_BYTES: usize = 512 * 1024;

/// Deeper than any real mail (Outlook's deepest run to a few hundred).
const MAX_HTML_DEPTH: usize = 1_000;

/// The deepest element nesting, roughly: start tags minus end tags, void
/// and self-closed elements not counted. Linear in the input.
fn nesting_depth(html: &str) -> usize {
    const VOID: [&str; 14] = [
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr",
    ];
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let end = rest.find('>').unwrap_or(rest.len());
        let tag = &rest[..end];
        if let Some(_closing) = tag.strip_prefix('/') {
            depth = depth.saturating_sub(1);
        } else if tag.starts_with(|c: char| c.is_ascii_alphabetic()) && !tag.ends_with('/') {
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            if !VOID.contains(&name.as_str()) {
                depth += 1;
                deepest = deepest.max(depth);
            }
        }
        rest = &rest[end..];
    }
    deepest
}

/// Text without tags, for documents too deep for html2text: tags become
/// line breaks where they are block-like, entities of the common kind are
/// decoded, blank runs collapsed.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let end = rest[open..].find('>').map_or(rest.len(), |e| open + e + 1);
        let tag = rest[open..end].to_ascii_lowercase();
        if ["<br", "<p", "</p", "<div", "</div", "<tr", "<li"]
            .iter()
            .any(|t| tag.starts_with(t))
        {
            out.push('\n');
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let mut lines: Vec<&str> = Vec::new();
    for line in decoded.lines().map(str::trim) {
        // At most one blank line in a row.
        if !(line.is_empty() && lines.last().is_some_and(|l| l.is_empty())) {
            lines.push(line);
        }
    }
    lines.join("\n").trim().to_string()
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

/// The attachments, their decoded bytes taken out of `message` (the
/// parser made them; a copy would be one more large buffer per
/// attachment), so this reads `message` last.
fn attachments(raw: &[u8], base: usize, message: &mut mail_parser::Message) -> Vec<Attachment> {
    let ids = std::mem::take(&mut message.attachments);
    // A part listed twice keeps its bytes for the second time: only its
    // last listing takes them. Found from the end in one pass, since the
    // sender decides how many parts there are.
    let mut seen = std::collections::HashSet::new();
    let mut last_listing: Vec<bool> = ids.iter().rev().map(|id| seen.insert(*id)).collect();
    last_listing.reverse();
    let mut found = Vec::with_capacity(ids.len());
    for (&id, taken) in ids.iter().zip(last_listing) {
        // As mail-parser's own iterator: the list ends at an unknown part.
        let Some(part) = message.parts.get_mut(id as usize) else {
            break;
        };
        let bytes: Vec<u8> = match &mut part.body {
            PartType::Binary(b) | PartType::InlineBinary(b) if taken => {
                std::mem::take(b).into_owned()
            }
            PartType::Text(t) | PartType::Html(t) if taken => {
                std::mem::take(t).into_owned().into_bytes()
            }
            PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
            PartType::Text(t) | PartType::Html(t) => t.as_bytes().to_vec(),
            PartType::Message(m) => m.raw_message().to_vec(),
            PartType::Multipart(_) => continue,
        };
        let part = &*part;
        let media_type = content_type_of(part);
        let filename = part
            .attachment_name()
            .map(str::to_string)
            .unwrap_or_else(|| default_filename(&media_type));
        found.push(Attachment {
            span: locate(raw, base, part, &bytes),
            sha256: sha256_hex(&bytes),
            filename,
            media_type,
            content_id: part.content_id().map(clean_id),
            bytes,
        });
    }
    found
}

fn default_filename(media_type: &str) -> String {
    match media_type {
        "message/rfc822" => "message.eml".to_string(),
        t if t.starts_with("image/") => format!("image.{}", &t[6..]),
        _ => "attachment.bin".to_string(),
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
