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
    decodes_to(encoded, encoding, decoded).then_some(span)
}

/// Whether [`decode`] of `encoded` gives exactly `expected`, without
/// making the decoded copy: an attachment is often larger than the
/// allocator's mmap threshold, so a copy is fresh pages to fault in, fill
/// and compare (the daemon's ingest profile, issue 16 §1).
fn decodes_to(encoded: &[u8], encoding: SpanEncoding, expected: &[u8]) -> bool {
    match encoding {
        SpanEncoding::Base64 => Base64Check::new(expected).run(encoded),
        SpanEncoding::QuotedPrintable => {
            quoted_printable_decode(encoded).is_some_and(|d| d == expected)
        }
        SpanEncoding::Plain => encoded == expected,
    }
}

/// mail-parser's `base64_decode`, step for step (serving decodes with it,
/// so a span is kept only where it gives these very bytes), comparing what
/// it would output with `expected` instead of collecting it: characters
/// outside the alphabet but space, tab, CR and LF make it fail; `=` flushes
/// the group so far and decoding goes on; a 0xFF byte ends it as the end
/// of the input does. A test holds it to `base64_decode` on varied input.
struct Base64Check<'a> {
    expected: &'a [u8],
    /// How many bytes of `expected` the output has matched so far.
    matched: usize,
    chunk: u32,
    sextets: u8,
}

impl<'a> Base64Check<'a> {
    fn new(expected: &'a [u8]) -> Self {
        Base64Check {
            expected,
            matched: 0,
            chunk: 0,
            sextets: 0,
        }
    }

    /// The output continues with `bytes`: false once it departs from
    /// `expected`.
    fn output(&mut self, bytes: &[u8]) -> bool {
        let end = self.matched + bytes.len();
        if self.expected.get(self.matched..end) != Some(bytes) {
            return false;
        }
        self.matched = end;
        true
    }

    fn flush(&mut self) -> bool {
        let chunk = self.chunk;
        let ok = match self.sextets {
            2 => self.output(&[(chunk >> 4) as u8]),
            3 => self.output(&[(chunk >> 10) as u8, (chunk >> 2) as u8]),
            _ => true,
        };
        self.sextets = 0;
        ok
    }

    fn run(mut self, encoded: &[u8]) -> bool {
        let mut rest = encoded;
        loop {
            // Whole groups of four at once while between groups, as the
            // decoder does; the bytes go out a line or so at a time.
            if self.sextets == 0 {
                let mut out = [0u8; 96];
                let mut len = 0;
                while let [a, b, c, d, tail @ ..] = rest {
                    let (a, b, c, d) = (sextet(*a), sextet(*b), sextet(*c), sextet(*d));
                    if a | b | c | d >= 0x40 {
                        break;
                    }
                    let word = (u32::from(a) << 18)
                        | (u32::from(b) << 12)
                        | (u32::from(c) << 6)
                        | u32::from(d);
                    out[len..len + 3].copy_from_slice(&word.to_be_bytes()[1..]);
                    len += 3;
                    rest = tail;
                    if len == out.len() {
                        if !self.output(&out) {
                            return false;
                        }
                        len = 0;
                    }
                }
                if !self.output(&out[..len]) {
                    return false;
                }
            }
            let Some((&ch, tail)) = rest.split_first() else {
                break;
            };
            rest = tail;
            let value = sextet(ch);
            if value < 0x40 {
                self.chunk = (self.chunk << 6) | u32::from(value);
                self.sextets = (self.sextets + 1) & 3;
                if self.sextets == 0 && !self.output(&self.chunk.to_be_bytes()[1..]) {
                    return false;
                }
            } else if ch == b'=' {
                if !self.flush() {
                    return false;
                }
            } else if ch == 0xff {
                break;
            } else if !matches!(ch, b' ' | b'\t' | b'\r' | b'\n') {
                return false;
            }
        }
        self.flush() && self.matched == self.expected.len()
    }
}

/// A base64 character's value, 0xff for any other byte.
fn sextet(ch: u8) -> u8 {
    SEXTETS[usize::from(ch)]
}

static SEXTETS: [u8; 256] = {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [0xffu8; 256];
    let mut value = 0;
    while value < 64 {
        table[ALPHABET[value] as usize] = value as u8;
        value += 1;
    }
    table
};

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

    /// Base64 in lines of 76 (mail_parser only decodes).
    fn base64_of(file: &[u8]) -> String {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for (n, chunk) in file.chunks(3).enumerate() {
            let v = chunk.iter().fold(0u32, |v, b| v << 8 | *b as u32) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                let c = if i <= chunk.len() {
                    T[(v >> (18 - 6 * i) & 63) as usize] as char
                } else {
                    '='
                };
                out.push(c);
            }
            if n % 19 == 18 {
                out.push_str("\r\n");
            }
        }
        out
    }

    fn served(raw: &[u8], span: RawSpan) -> Vec<u8> {
        let slice = &raw[span.offset as usize..(span.offset + span.length) as usize];
        decode(slice, span.encoding).unwrap()
    }

    #[test]
    fn a_base64_attachment_is_served_from_the_raw_mail_byte_for_byte() {
        // A leading blank line: the parser sees the mail from one byte on.
        let file: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let b64 = base64_of(&file);
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

    /// The check without a copy agrees with `decode` (mail-parser's
    /// decoder, which serving uses) on valid, odd and broken base64.
    #[test]
    fn the_base64_check_agrees_with_the_decoder_serving_uses() {
        const PIECES: [&[u8]; 12] = [
            b"QUJD", b"ZGVm", b"Zw", b"aGk=", b"=", b"==", b"\r\n", b" \t", b"%", b"\xff", b"Q",
            b"-",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut valid = 0;
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..next() % 40 {
                input.extend_from_slice(PIECES[(next() % 12) as usize]);
            }
            let check = |expected: &[u8]| decodes_to(&input, SpanEncoding::Base64, expected);
            match decode(&input, SpanEncoding::Base64) {
                Some(decoded) => {
                    valid += 1;
                    assert!(check(&decoded), "{input:?}");
                    let mut longer = decoded.clone();
                    longer.push(0);
                    assert!(!check(&longer), "{input:?}");
                    if let Some((_, shorter)) = decoded.split_last() {
                        assert!(!check(shorter), "{input:?}");
                        let mut changed = decoded.clone();
                        changed[0] ^= 1;
                        assert!(!check(&changed), "{input:?}");
                    }
                }
                None => {
                    let cleaned: Vec<u8> = input
                        .iter()
                        .copied()
                        .filter(|b| !b"%-".contains(b))
                        .collect();
                    for expected in [Some(Vec::new()), decode(&cleaned, SpanEncoding::Base64)] {
                        assert!(!check(&expected.unwrap_or_default()), "{input:?}");
                    }
                }
            }
        }
        assert!(
            valid > 1_000 && valid < 19_000,
            "both kinds were tried: {valid}"
        );
        // A long run of whole groups (one unbroken line) goes out in
        // several full buffers.
        let file: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        let encoded = base64_of(&file).replace("\r\n", "");
        assert!(decodes_to(encoded.as_bytes(), SpanEncoding::Base64, &file));
        assert!(!decodes_to(
            encoded.as_bytes(),
            SpanEncoding::Base64,
            &file[..999]
        ));
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
