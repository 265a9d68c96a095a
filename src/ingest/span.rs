//! Span: where an attachment's bytes sit in the raw mail and how they are
//! encoded there, so that the store keeps each attachment once (in the raw
//! mail it keeps anyway) instead of a decoded copy beside it (issue 16 §1).
//! A span is recorded only when decoding it gives the very bytes the
//! parser gave, so serving it is byte-identical; otherwise the attachment
//! has no span and its decoded bytes are stored as before. Pure: it
//! decodes slices, it reads and writes nothing.

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Encoding, MessagePart};

/// How a span's bytes are encoded in the raw mail (its
/// Content-Transfer-Encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanEncoding {
    Base64,
    QuotedPrintable,
    /// As they are (7bit, 8bit, binary).
    Plain,
}

impl SpanEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            SpanEncoding::Base64 => "base64",
            SpanEncoding::QuotedPrintable => "quoted-printable",
            SpanEncoding::Plain => "plain",
        }
    }

    pub fn parse(text: &str) -> Option<SpanEncoding> {
        match text {
            "base64" => Some(SpanEncoding::Base64),
            "quoted-printable" => Some(SpanEncoding::QuotedPrintable),
            "plain" => Some(SpanEncoding::Plain),
            _ => None,
        }
    }
}

/// Bytes `offset..offset + length` of the raw mail, encoded as `encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSpan {
    pub offset: u64,
    pub length: u64,
    pub encoding: SpanEncoding,
}

/// The span of `part`'s body in `raw`, when decoding it gives `decoded`.
/// `base` is where the parsed message starts in `raw` (after blank lines
/// or an mbox `From ` line the parser did not see).
pub fn locate(raw: &[u8], base: usize, part: &MessagePart, decoded: &[u8]) -> Option<RawSpan> {
    let start = base.checked_add(usize::try_from(part.offset_body).ok()?)?;
    let end = base.checked_add(usize::try_from(part.offset_end).ok()?)?;
    let encoding = match part.encoding {
        Encoding::Base64 => SpanEncoding::Base64,
        Encoding::QuotedPrintable => SpanEncoding::QuotedPrintable,
        Encoding::None => SpanEncoding::Plain,
    };
    let span = RawSpan {
        offset: start as u64,
        length: end.checked_sub(start)? as u64,
        encoding,
    };
    let encoded = raw.get(start..end)?;
    (decode(encoded, encoding)?.as_slice() == decoded).then_some(span)
}

/// The bytes a span holds, decoded; `None` when they do not decode.
pub fn decode(encoded: &[u8], encoding: SpanEncoding) -> Option<Vec<u8>> {
    match encoding {
        SpanEncoding::Base64 => base64_decode(encoded),
        SpanEncoding::QuotedPrintable => quoted_printable_decode(encoded),
        SpanEncoding::Plain => Some(encoded.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    fn mail_with(part_header: &str, body: &str) -> Vec<u8> {
        format!(
            "\r\nFrom: a@x.test\r\nTo: t@y.test\r\nSubject: s\r\nMessage-ID: <m@x.test>\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
             --b\r\n{part_header}\r\n\r\n{body}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    fn served(raw: &[u8], span: RawSpan) -> Vec<u8> {
        let slice = &raw[span.offset as usize..(span.offset + span.length) as usize];
        decode(slice, span.encoding).unwrap()
    }

    #[test]
    fn a_base64_attachment_is_served_from_the_raw_mail_byte_for_byte() {
        // A leading blank line: the parser sees the mail from one byte on.
        let file: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let b64 = {
            use std::fmt::Write;
            // A small encoder for the test: mail_parser only decodes.
            const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut out = String::new();
            for (n, chunk) in file.chunks(3).enumerate() {
                let v =
                    chunk.iter().fold(0u32, |v, b| v << 8 | *b as u32) << (8 * (3 - chunk.len()));
                for i in 0..4 {
                    let c = if i <= chunk.len() {
                        T[(v >> (18 - 6 * i) & 63) as usize] as char
                    } else {
                        '='
                    };
                    out.push(c);
                }
                if n % 19 == 18 {
                    let _ = write!(out, "\r\n");
                }
            }
            out
        };
        let raw = mail_with(
            "Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"f.pdf\"\r\n\
             Content-Transfer-Encoding: base64",
            &b64,
        );
        let parsed = parse(&raw).unwrap();
        let a = &parsed.attachments[0];
        assert_eq!(a.bytes, file);
        let span = a.span.expect("a span for a plain base64 part");
        assert_eq!(span.encoding, SpanEncoding::Base64);
        assert_eq!(served(&raw, span), file);
    }

    #[test]
    fn a_part_whose_span_would_not_give_its_bytes_gets_no_span() {
        // A text attachment in Latin-1: the parser hands it over converted
        // to UTF-8, which the raw bytes are not; it keeps its decoded copy.
        let raw = mail_with(
            "Content-Type: text/plain; charset=iso-8859-1\r\n\
             Content-Disposition: attachment; filename=\"n.txt\"\r\n\
             Content-Transfer-Encoding: quoted-printable",
            "caf=E9 cr=E8me",
        );
        let parsed = parse(&raw).unwrap();
        let a = &parsed.attachments[0];
        assert_eq!(a.bytes, "café crème".as_bytes());
        assert_eq!(a.span, None);
        // A span never lies: checked against what was decoded.
        let part = mail_parser::MessageParser::default()
            .parse(&raw[2..])
            .unwrap();
        let wrong = locate(&raw, 2, &part.parts[2], b"something else");
        assert_eq!(wrong, None);
        assert_eq!(decode(b"%%%", SpanEncoding::Base64), None);
        assert_eq!(SpanEncoding::parse("base64"), Some(SpanEncoding::Base64));
        assert_eq!(
            SpanEncoding::parse(SpanEncoding::Plain.as_str()),
            Some(SpanEncoding::Plain)
        );
    }
}
