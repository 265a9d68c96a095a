use chrono::Utc;
use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::*;
use crate::domain::MessageKind;
use crate::ingest::parse::{Mailbox, parse};
use crate::ingest::subject::SubjectTag;
use crate::outbound::compose::{Draft, Identity, ThreadHeaders, build};

fn me() -> Identity {
    Identity {
        address: "tickets@support.test".into(),
        name: "Example Support".into(),
        tag: SubjectTag::new("Ticket"),
        loop_value: "loop-1".into(),
        wording: Default::default(),
    }
}

fn draft(html: Option<&str>, attachments: Vec<OutgoingAttachment>) -> Draft<'static> {
    Draft {
        kind: MessageKind::Reply,
        auto_submitted: None,
        automatic_reply: false,
        from_name: "Alice via Support".into(),
        to: vec![Mailbox::parse("ann@customer.test", None).unwrap()],
        reply_to: None,
        subject: "s".into(),
        text: "Hello Ann,\nsee the invoice.\n".into(),
        html: html.map(str::to_string),
        attachments,
        message_id: "pd.1.r.x@support.test",
        thread: ThreadHeaders::default(),
    }
}

fn pdf() -> OutgoingAttachment {
    OutgoingAttachment {
        filename: "Rechnung März.pdf".into(),
        media_type: "application/pdf".into(),
        bytes: (0..=255u8).cycle().take(5000).collect(),
        content_id: Some("pdf@x".into()),
    }
}

fn png() -> OutgoingAttachment {
    OutgoingAttachment {
        filename: "shot.png".into(),
        media_type: "image/png".into(),
        bytes: b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR-not-really".to_vec(),
        content_id: Some("shot1@x".into()),
    }
}

/// The content types of the parts, in order (`multipart/*` included).
fn shape(raw: &[u8]) -> Vec<String> {
    let m = MessageParser::default().parse(raw).unwrap();
    m.parts
        .iter()
        .map(|p| {
            let ct = p.content_type().unwrap();
            format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()).to_ascii_lowercase()
        })
        .collect()
}

#[test]
fn the_shapes_text_alternative_related_and_mixed() {
    let html = "<p>Hello Ann,<br>see the invoice.</p>";
    let with_cid = "<p>Hello Ann,<br>see the invoice.<img src=\"cid:shot1@x\"></p>";
    let cases = [
        (None, vec![], vec!["text/plain"]),
        (
            Some(html),
            vec![],
            vec!["multipart/alternative", "text/plain", "text/html"],
        ),
        (
            Some(html),
            vec![pdf()],
            vec![
                "multipart/mixed",
                "multipart/alternative",
                "text/plain",
                "text/html",
                "application/pdf",
            ],
        ),
        (
            Some(with_cid),
            vec![png()],
            vec![
                "multipart/related",
                "multipart/alternative",
                "text/plain",
                "text/html",
                "image/png",
            ],
        ),
        (
            Some(with_cid),
            vec![pdf(), png()],
            vec![
                "multipart/mixed",
                "multipart/related",
                "multipart/alternative",
                "text/plain",
                "text/html",
                "image/png",
                "application/pdf",
            ],
        ),
        (
            None,
            vec![pdf()],
            vec!["multipart/mixed", "text/plain", "application/pdf"],
        ),
    ];
    for (html, attachments, expected) in cases {
        let mail = build(&me(), draft(html, attachments), Utc::now()).unwrap();
        assert_eq!(shape(&mail.raw), expected, "html {html:?}");
        let parsed = parse(&mail.raw).unwrap();
        assert_eq!(parsed.text.trim(), "Hello Ann,\nsee the invoice.");
        assert_eq!(parsed.html.is_some(), html.is_some());
        assert_eq!(parsed.message_id.as_deref(), Some("pd.1.r.x@support.test"));
    }
}

#[test]
fn attachment_bytes_names_and_types_round_trip() {
    let html = "<p>Hello Ann,<br>see the invoice.<img src=\"cid:shot1@x\"></p>";
    let mail = build(&me(), draft(Some(html), vec![pdf(), png()]), Utc::now()).unwrap();
    let parsed = parse(&mail.raw).unwrap();
    assert_eq!(parsed.attachments.len(), 2, "{:?}", parsed.attachments);
    let find = |name: &str| {
        parsed
            .attachments
            .iter()
            .find(|a| a.filename == name)
            .unwrap()
    };
    let (sent_pdf, sent_png) = (find("Rechnung März.pdf"), find("shot.png"));
    assert_eq!(sent_pdf.bytes, pdf().bytes);
    assert_eq!(sent_pdf.media_type, "application/pdf");
    assert_eq!(sent_png.bytes, png().bytes);
    assert_eq!(sent_png.media_type, "image/png");
    assert_eq!(sent_png.content_id.as_deref(), Some("shot1@x"));
    assert!(parsed.html.unwrap().contains("cid:shot1@x"));
    // The inline image is inline; the PDF is attached.
    let m = MessageParser::default().parse(&mail.raw[..]).unwrap();
    let disposition = |ct: &str| {
        m.parts
            .iter()
            .find(|p| p.content_type().is_some_and(|c| c.subtype() == Some(ct)))
            .and_then(|p| p.content_disposition())
            .map(|d| d.ctype().to_string())
    };
    assert_eq!(disposition("png").as_deref(), Some("inline"));
    assert_eq!(disposition("pdf").as_deref(), Some("attachment"));
    assert!(
        m.parts
            .iter()
            .all(|p| !matches!(p.body, PartType::Binary(ref b) if b.is_empty()))
    );
}

#[test]
fn every_text_part_goes_out_in_crlf_and_both_say_the_same() {
    let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    let mut d = draft(None, vec![]);
    d.html = Some(crate::outbound::html::html_from_text(&text));
    d.text = text.clone();
    let mail = build(&me(), d, Utc::now()).unwrap();
    let parsed = parse(&mail.raw).unwrap();
    assert_eq!(parsed.text.trim_end(), text.trim_end());
    let html = parsed.html.unwrap();
    assert!(html.contains("line 19999"), "the HTML part is whole");
    assert!(
        !String::from_utf8_lossy(&mail.raw)
            .replace("\r\n", "")
            .contains('\n')
    );
}

#[test]
fn a_hostile_file_name_folds_no_header_in() {
    let mut a = pdf();
    a.filename = "x.pdf\r\nBcc: victim@evil.test\"".into();
    let mail = build(&me(), draft(None, vec![a]), Utc::now()).unwrap();
    let parsed = parse(&mail.raw).unwrap();
    assert!(parsed.header("bcc").is_none());
    assert_eq!(parsed.attachments[0].filename, "x.pdfBcc: victim@evil.test");
    assert_eq!(safe_filename("\r\n"), "attachment.bin");
    let mut odd = png();
    odd.media_type = "not a type".into();
    let mail = build(&me(), draft(None, vec![odd]), Utc::now()).unwrap();
    assert_eq!(
        parse(&mail.raw).unwrap().attachments[0].media_type,
        "application/octet-stream"
    );
}

#[test]
fn crlf_ends_every_line_with_one_cr_and_changes_nothing_else() {
    // The reference: the char-by-char rule crlf replaced.
    fn reference(text: &str) -> String {
        let mut out = String::new();
        let mut previous = '\0';
        for c in text.chars() {
            if c == '\n' && previous != '\r' {
                out.push('\r');
            }
            out.push(c);
            previous = c;
        }
        out
    }
    let cases = [
        "",
        "\n",
        "\n\n",
        "\r\n\r\n",
        "a\r",
        "\r",
        "\r\r\n",
        "a\nb\r\nc",
        "é\nü\r\n\n",
        "x\r\ny\n\r\n",
        "no newline at all",
    ];
    for text in cases {
        assert_eq!(crlf(text), reference(text), "{text:?}");
    }
    assert_eq!(crlf("a\n\nb"), "a\r\n\r\nb");
}
