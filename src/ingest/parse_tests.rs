//! Tests of `parse`: the fields ingest reads, HTML bodies and their
//! quotes, the charsets real mail uses. Fixtures are written here.

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

/// A mail with one body part of `content_type`, its bytes as given.
fn single(content_type: &str, transfer: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "From: a@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
         Content-Type: {content_type}\r\nContent-Transfer-Encoding: {transfer}\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw.extend_from_slice(b"\r\n");
    raw
}

fn html_mail(html: &str) -> ParsedMail {
    parse(&single("text/html; charset=utf-8", "8bit", html.as_bytes())).unwrap()
}

#[test]
fn an_empty_plain_alternative_falls_back_to_the_html() {
    let raw = b"From: a@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\r\n\
--b\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n\
<html><body><p>The html part.</p></body></html>\r\n--b--\r\n";
    let mail = parse(raw).unwrap();
    assert_eq!(mail.text.trim(), "The html part.");
    assert!(mail.html.is_some_and(|h| h.contains("<p>")));
}

#[test]
fn the_html_root_of_multipart_related_is_read_when_it_is_not_first() {
    let raw = b"From: a@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/related; type=\"text/html\"; boundary=\"r\"\r\n\r\n\
--r\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\n\
iVBORw0KGgo=\r\n\
--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
<p>Saved as a web archive.</p><img src=\"cid:logo\">\r\n--r--\r\n";
    let mail = parse(raw).unwrap();
    assert!(
        mail.text.contains("Saved as a web archive."),
        "{:?}",
        mail.text
    );
    assert!(mail.attachments.iter().any(|a| a.media_type == "image/png"));
}

#[test]
fn a_plain_mail_has_no_html() {
    let mail = parse(b"From: a@example.test\r\nSubject: hi\r\n\r\nJust text.\r\n").unwrap();
    assert!(mail.html.is_none());
    assert_eq!(mail.text.trim(), "Just text.");
}

#[test]
fn gmail_quotes_in_html_only_mail_go_to_the_quoted_history() {
    let mail = html_mail(
        "<div dir=\"ltr\">Thanks, that fixed it.</div><br>\
         <div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">On Mon, 2 Mar 2026 \
         at 10:00, Support &lt;support@example.test&gt; wrote:<br></div>\
         <blockquote class=\"gmail_quote\" style=\"margin:0\">Please restart the printer.\
         </blockquote></div>",
    );
    assert!(
        mail.text.contains("> Please restart the printer."),
        "{:?}",
        mail.text
    );
    let stripped = strip::strip_reply(&mail.text);
    assert_eq!(stripped.new_text, "Thanks, that fixed it.");
    assert!(stripped.quoted.contains("Please restart the printer."));
    assert!(stripped.quoted.contains("wrote:"));
}

#[test]
fn outlook_history_in_html_only_mail_goes_to_the_quoted_history() {
    let mail = html_mail(
        "<html><body><div>New answer here.</div><hr style=\"display:inline-block\">\
         <div id=\"divRplyFwdMsg\" dir=\"ltr\"><b>From:</b> Support<br><b>Sent:</b> \
         Monday<br><b>Subject:</b> Printer</div><div>Old text from the agent.</div>\
         </body></html>",
    );
    let stripped = strip::strip_reply(&mail.text);
    assert_eq!(stripped.new_text, "New answer here.");
    assert!(stripped.quoted.contains("Old text from the agent."));
}

#[test]
fn apple_mail_citations_go_to_the_quoted_history() {
    let mail = html_mail(
        "<html><body><div>Yes, every morning.</div><div><br>\
         <blockquote type=\"cite\"><div>On 2 Mar 2026, at 10:00, Support \
         &lt;support@example.test&gt; wrote:</div><br><div>Does it happen daily?</div>\
         </blockquote></div></body></html>",
    );
    let stripped = strip::strip_reply(&mail.text);
    assert_eq!(stripped.new_text, "Yes, every morning.");
    assert!(stripped.quoted.contains("Does it happen daily?"));
}

#[test]
fn a_bare_html_forward_keeps_what_it_forwards() {
    let mail = html_mail(
        "<div class=\"gmail_quote\">---------- Forwarded message ---------<br>\
         From: Ann &lt;ann@example.test&gt;<br><br>The original problem report.</div>",
    );
    assert!(
        mail.text.contains("The original problem report."),
        "{:?}",
        mail.text
    );
}

#[test]
fn removed_html_is_exactly_what_was_cut() {
    let html = "<div>A</div><div class=\"gmail_quote\">Q</div><div>B</div>";
    let cleaned = strip::remove_html_quotes(html).unwrap();
    assert_eq!(cleaned, "<div>A</div><div>B</div>");
    assert_eq!(
        removed_html(html, &cleaned),
        "<div class=\"gmail_quote\">Q</div>"
    );
    // Two cuts: the span from the first to the last.
    let html = "<p>A</p><blockquote type=cite>Q1</blockquote><p>B</p>\
                <blockquote type=cite>Q2</blockquote><p>C</p>";
    let cleaned = strip::remove_html_quotes(html).unwrap();
    let removed = removed_html(html, &cleaned);
    assert!(
        removed.contains("Q1") && removed.contains("Q2"),
        "{removed}"
    );
}

#[test]
fn the_charsets_real_mail_uses_are_decoded() {
    let cases: [(&str, &[u8], &str); 12] = [
        ("iso-2022-jp", b"\x1b$B%F%9%H\x1b(B", "テスト"),
        ("shift_jis", b"\x83e\x83X\x83g", "テスト"),
        ("euc-jp", b"\xa5\xc6\xa5\xb9\xa5\xc8", "テスト"),
        ("gb2312", b"\xd6\xd0\xce\xc4", "中文"),
        ("gb18030", b"\xd6\xd0\xce\xc4", "中文"),
        ("big5", b"\xa4\xa4\xa4\xe5", "中文"),
        ("euc-kr", b"\xc7\xd1\xb1\xb9", "한국"),
        ("windows-1251", b"\xcf\xf0\xe8\xe2\xe5\xf2", "Привет"),
        ("windows-1252", b"\x80", "€"),
        ("iso-8859-2", b"\xb3", "ł"),
        ("koi8-r", b"\xf0\xd2\xc9\xd7\xc5\xd4", "Привет"),
        ("utf-7", b"+ZeVnLIqe-", "日本語"),
    ];
    for (charset, bytes, want) in cases {
        let raw = single(&format!("text/plain; charset={charset}"), "8bit", bytes);
        let mail = parse(&raw).unwrap();
        assert_eq!(mail.text.trim(), want, "body in {charset}");
    }
}

#[test]
fn rfc2047_subjects_and_names_in_many_charsets_are_decoded() {
    let cases = [
        ("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=", "テスト"),
        ("=?Shift_JIS?B?g2WDWINn?=", "テスト"),
        ("=?GB2312?B?1tDOxA==?=", "中文"),
        ("=?gb18030?B?1tDOxA==?=", "中文"),
        ("=?big5?B?pKSk5Q==?=", "中文"),
        ("=?euc-kr?B?x9GxuQ==?=", "한국"),
        ("=?koi8-r?B?8NLJ18XU?=", "Привет"),
        ("=?windows-1251?B?z/Do4uXy?=", "Привет"),
        ("=?iso-8859-1?Q?Gr=FC=DFe?=", "Grüße"),
    ];
    for (encoded, want) in cases {
        let raw =
            format!("From: {encoded} <a@example.test>\r\nSubject: Re: {encoded}\r\n\r\nbody\r\n");
        let mail = parse(raw.as_bytes()).unwrap();
        assert_eq!(mail.subject, format!("Re: {want}"), "{encoded}");
        assert_eq!(mail.from.unwrap().name.as_deref(), Some(want), "{encoded}");
    }
}

#[test]
fn rfc2231_filenames_are_decoded() {
    let raw = b"From: a@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment;\r\n \
filename*=UTF-8''%E3%83%86%E3%82%B9%E3%83%88.txt\r\n\r\nabc\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n \
filename*0*=iso-8859-1''Gr%FC%DFe;\r\n filename*1=.bin\r\n\r\nxyz\r\n--b--\r\n";
    let mail = parse(raw).unwrap();
    let names: Vec<&str> = mail
        .attachments
        .iter()
        .map(|a| a.filename.as_str())
        .collect();
    assert_eq!(names, ["テスト.txt", "Grüße.bin"]);
}

#[test]
fn control_characters_in_a_display_name_become_spaces() {
    // Found by fuzzing: a name with "\r\t" made the confirmation's To
    // header panic inside lettre.
    let mailbox = Mailbox::parse(" Ann@Example.test ", Some("Ann\r\tof\u{0}the\n  Shop ")).unwrap();
    assert_eq!(mailbox.address, "ann@example.test");
    assert_eq!(mailbox.name.as_deref(), Some("Ann of the Shop"));
    let unnamed = Mailbox::parse("a@example.test", Some("\r\n\t")).unwrap();
    assert_eq!(unnamed.name, None);
}

#[test]
fn addresses_that_cannot_be_written_to_are_dropped_at_parse_time_and_named() {
    // Issue 17: each of these, kept as a Cc, made every later mail to its
    // ticket fail to compose.
    let raw = "From: Ann <ann@example.test>\r\nTo: tickets@support.test\r\n\
               Cc: \"bad address\"@evil.test, x@, Carol <carol@example.test>, a@b@c.test\r\n\
               Subject: hi\r\nMessage-ID: <m@example.test>\r\n\r\nbody\r\n";
    let mail = parse(raw.as_bytes()).unwrap();
    let cc: Vec<&str> = mail.cc.iter().map(|m| m.address.as_str()).collect();
    assert_eq!(cc, ["carol@example.test"]);
    assert_eq!(mail.dropped_addresses, ["@evil.test", "x@", "a@b@c.test"]);
    for m in mail.cc.iter().chain(mail.to.iter()).chain(mail.from.iter()) {
        assert!(m.address.parse::<lettre::Address>().is_ok(), "{m:?}");
    }
}

#[test]
fn a_thousand_bad_addresses_are_dropped_and_only_twenty_named() {
    let bad: Vec<String> = (0..1000).map(|i| format!("x{i}@")).collect();
    let raw = format!(
        "From: ann@example.test\r\nCc: {}\r\nSubject: hi\r\n\r\nbody\r\n",
        bad.join(", ")
    );
    let mail = parse(raw.as_bytes()).unwrap();
    assert!(mail.cc.is_empty());
    assert_eq!(mail.dropped_addresses.len(), 20);
}

#[test]
fn hostile_nesting_is_read_without_html2text_and_fast() {
    let depth = 30_000;
    let html = format!(
        "{}<p>Deep &amp; dark</p>{}",
        "<div>".repeat(depth),
        "</div>".repeat(depth)
    );
    let started = std::time::Instant::now();
    let text = html_to_text(&html);
    assert_eq!(text, "Deep & dark");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Ordinary documents still go through html2text.
    assert_eq!(
        html_to_text("<p>Hello <b>world</b></p>").trim(),
        "Hello world"
    );
}

#[test]
fn a_huge_body_keeps_a_bounded_text_and_says_so() {
    // Issue 17: every copy of a mail's text downstream (strip, the stored
    // message, the page) is bounded by this cut, not by the mail.
    let line = "All work and no play makes Jack a dull boy. Ünïcödé.\n";
    let body = line.repeat(3 * MAX_TEXT_BYTES / line.len());
    let mail = parse(&single(
        "text/plain; charset=utf-8",
        "8bit",
        body.as_bytes(),
    ))
    .unwrap();
    assert!(mail.text.len() <= MAX_TEXT_BYTES + TEXT_CUT_NOTE.len());
    assert!(mail.text.ends_with(TEXT_CUT_NOTE));
    assert!(mail.text.starts_with(line));

    let html = format!("<p>{}</p>", "word ".repeat(3 * MAX_HTML_READ_BYTES / 5));
    let mail = parse(&single("text/html; charset=utf-8", "8bit", html.as_bytes())).unwrap();
    assert!(mail.html.as_ref().unwrap().len() <= MAX_HTML_READ_BYTES);
    assert!(mail.text.len() <= MAX_TEXT_BYTES + TEXT_CUT_NOTE.len());
    assert!(mail.text.starts_with("word word"));

    // A short one is untouched.
    let mail = parse(&single("text/plain", "7bit", b"Hello\r\n")).unwrap();
    assert_eq!(mail.text.trim(), "Hello");
}
