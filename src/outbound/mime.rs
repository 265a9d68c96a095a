//! MIME: the body structure of a mail of ours, for [`super::compose::build`].
//! A text part alone when there is no HTML and nothing attached;
//! `multipart/alternative` (text, then HTML) when there is HTML; wrapped in
//! `multipart/related` with the inline images the HTML shows (`cid:`), and
//! in `multipart/mixed` with the attachments. Owns [`OutgoingAttachment`]
//! and the CRLF line endings of every text part. Pure: it decides the
//! shape and hands the parts to lettre; it reads and sends nothing.

use lettre::message::header::ContentType;
use lettre::message::{Attachment as LettreAttachment, MultiPart, SinglePart};

use crate::ingest::parse::Attachment;

/// A file a mail of ours carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingAttachment {
    pub filename: String,
    /// `type/subtype`; one lettre cannot read goes as
    /// `application/octet-stream`.
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// Without angle brackets. An attachment with one that the HTML shows
    /// (`cid:ID`) goes inline; otherwise it is attached.
    pub content_id: Option<String>,
}

impl From<&Attachment> for OutgoingAttachment {
    fn from(a: &Attachment) -> Self {
        OutgoingAttachment {
            filename: a.filename.clone(),
            media_type: a.media_type.clone(),
            bytes: a.bytes.clone(),
            content_id: a.content_id.clone(),
        }
    }
}

/// A mail's body: one part or a tree of them.
pub enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

/// The body for `text`, `html` and `attachments` (see the module doc).
pub fn body(text: &str, html: Option<&str>, attachments: &[OutgoingAttachment]) -> Body {
    let text_part = || {
        SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(crlf(text))
    };
    let (inline, attached): (Vec<&OutgoingAttachment>, Vec<&OutgoingAttachment>) = attachments
        .iter()
        .partition(|a| html.is_some_and(|h| shows(h, a.content_id.as_deref())));
    let content = match html {
        None => {
            if attached.is_empty() {
                return Body::Single(text_part());
            }
            Body::Single(text_part())
        }
        Some(html) => {
            let alternative = MultiPart::alternative().singlepart(text_part()).singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(crlf(html)),
            );
            if inline.is_empty() {
                Body::Multi(alternative)
            } else {
                let related = inline
                    .iter()
                    .fold(MultiPart::related().multipart(alternative), |m, a| {
                        m.singlepart(part(a, true))
                    });
                Body::Multi(related)
            }
        }
    };
    if attached.is_empty() {
        return content;
    }
    let mixed = match content {
        Body::Single(p) => MultiPart::mixed().singlepart(p),
        Body::Multi(m) => MultiPart::mixed().multipart(m),
    };
    Body::Multi(
        attached
            .iter()
            .fold(mixed, |m, a| m.singlepart(part(a, false))),
    )
}

/// Whether `html` shows the part with `content_id` (`cid:ID`, any case).
pub fn shows(html: &str, content_id: Option<&str>) -> bool {
    let Some(id) = content_id.filter(|id| !id.is_empty()) else {
        return false;
    };
    let needle = format!("cid:{}", id.to_ascii_lowercase());
    html.to_ascii_lowercase().contains(&needle)
}

/// One attachment as a part: inline with its Content-ID, or attached;
/// both with the file's name.
fn part(a: &OutgoingAttachment, inline: bool) -> SinglePart {
    let content_type = ContentType::parse(&a.media_type).unwrap_or_else(|_| {
        ContentType::parse("application/octet-stream").expect("a literal media type")
    });
    let name = safe_filename(&a.filename);
    let disposition = match (&a.content_id, inline) {
        (Some(id), true) => LettreAttachment::new_inline_with_name(id.clone(), name),
        _ => LettreAttachment::new(name),
    };
    disposition.body(a.bytes.clone(), content_type)
}

/// A file name fit for a header: no control characters (a hostile name
/// could fold a header of its own in), no quotes or backslashes, at most
/// [`MAX_FILENAME_CHARS`] characters.
fn safe_filename(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\'))
        .take(MAX_FILENAME_CHARS)
        .collect();
    match cleaned.trim() {
        "" => "attachment.bin".to_string(),
        name => name.to_string(),
    }
}

const MAX_FILENAME_CHARS: usize = 150;

/// `text` with every line ending CRLF, in one pass. lettre inserts a
/// missing `\r` before each `\n` one at a time, moving the rest of the
/// body each time (80,000 lines took seconds, 24 MB never finished): a
/// body already in CRLF leaves it nothing to insert. Copies line by line
/// (`find` is a memchr), not char by char: this ran for every part of
/// every mail we compose (1.5% of ingest's CPU).
pub fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let mut rest = text;
    while let Some(end) = rest.find('\n') {
        let line = &rest[..end];
        out.push_str(line);
        if !line.ends_with('\r') {
            out.push('\r');
        }
        out.push('\n');
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "mime_tests.rs"]
mod tests;
