use super::*;

/// The words the text part of each mail below has.
const TEXT: &str = "Hello Ann,\n\nthe invoice is attached. See the docs <https://docs.test/a> and:\n\
                    - one\n- two\n\nBest regards\nAlice";

fn relay(html: &str) -> String {
    relay_html(html, TEXT).expect("the HTML says what the text says")
}

#[test]
fn formatting_links_and_lists_stay() {
    let out = relay(
        "<p>Hello Ann,</p><p>the <b>invoice</b> is attached. See the \
         <a href=\"https://docs.test/a\">docs</a> and:</p><ul><li>one</li><li>two</li></ul>\
         <p>Best regards<br>Alice</p>",
    );
    assert!(out.contains("<b>invoice</b>"), "{out}");
    assert!(out.contains("<ul><li>one</li><li>two</li></ul>"), "{out}");
    assert!(
        out.contains(r#"<a href="https://docs.test/a" rel="noopener noreferrer">docs</a>"#),
        "{out}"
    );
}

#[test]
fn scripts_handlers_forms_and_frames_go() {
    let out = relay(
        "<script>alert(1)</script><p onclick=\"alert(2)\">Hello Ann,</p>\
         <img src=\"cid:logo@x\" onerror=\"alert(3)\">\
         <form action=\"https://evil.test/\"><input name=q></form>\
         <iframe src=\"https://evil.test/\">the invoice</iframe>\
         <p>the invoice is attached</p><object data=\"x.swf\">docs</object>",
    );
    for bad in [
        "script", "alert", "onclick", "onerror", "<form", "<input", "iframe", "object",
    ] {
        assert!(!out.contains(bad), "{bad} in {out}");
    }
    assert!(out.contains(r#"<img src="cid:logo@x">"#), "{out}");
}

#[test]
fn a_javascript_link_loses_its_href() {
    let out = relay("<p>Hello Ann, the <a href=\"javascript:alert(1)\">docs</a></p>");
    assert!(!out.contains("javascript"), "{out}");
    assert!(out.contains("docs"), "{out}");
}

#[test]
fn a_remote_image_becomes_a_link_and_cid_images_stay() {
    // The text part names the images by their alt texts, as mail clients write them.
    let text = "Hello Ann, [logo]\n\nthe invoice [shot]";
    let relay = |html: &str| relay_html(html, text).expect("the same words");
    let out = relay(
        "<p>Hello Ann,</p><img src=\"https://tracker.test/p.gif?u=1&amp;v=2\" alt=\"logo\">\
         <img src=\"http://tracker.test/q.gif\"><img src=\"data:image/png;base64,AAAA\">\
         <p>the invoice <img src=\"CID:inline1@x\" alt=\"shot\"></p>",
    );
    assert!(!out.contains("<img src=\"http"), "{out}");
    assert!(!out.contains("data:"), "{out}");
    assert!(
        out.contains(r#"<a href="https://tracker.test/p.gif?u=1&amp;v=2" rel="noopener noreferrer">[logo]</a>"#),
        "{out}"
    );
    assert!(
        out.contains(r#"<img src="CID:inline1@x" alt="shot">"#),
        "{out}"
    );
}

#[test]
fn a_style_with_url_or_an_escape_goes_and_plain_styles_stay() {
    let out = relay(
        "<p style=\"color: red; background: url(https://tracker.test/x)\">Hello Ann,</p>\
         <p style=\"background-image: u\\72l(https://tracker.test/y)\">the invoice</p>\
         <p style=\"font-weight: bold; position: fixed\">is attached</p>\
         <style>p { background: url(https://tracker.test/z) }</style>",
    );
    assert!(!out.contains("tracker"), "{out}");
    assert!(!out.contains("url"), "{out}");
    assert!(
        out.contains(r#"<p style="font-weight:bold">is attached</p>"#),
        "{out}"
    );
}

#[test]
fn a_cited_blockquote_and_the_signature_are_cut_as_in_the_text() {
    let out = relay(
        "<p>Hello Ann,</p><p>the invoice is attached.</p>\
         <div class=\"moz-cite-prefix\">On Monday Ann wrote:</div>\
         <blockquote type=\"cite\">My secret order number 4711</blockquote>\
         <pre class=\"moz-signature\">-- \nAlice Example, Phone 555</pre>",
    );
    assert!(!out.contains("4711") && !out.contains("wrote"), "{out}");
    assert!(!out.contains("555"), "{out}");
    let gmail = relay(
        "<div dir=\"ltr\">Hello Ann,<div>the invoice is attached.</div><br>-- <br>\
         <div class=\"gmail_signature\">Alice, CEO, 555</div></div>\
         <div class=\"gmail_quote\">On Mon, Ann wrote:<blockquote>order 4711</blockquote></div>",
    );
    assert!(!gmail.contains("4711") && !gmail.contains("555"), "{gmail}");
}

#[test]
fn command_lines_at_the_top_go_and_later_ones_stay() {
    let out = relay_html(
        "<div>#resolve</div><div>#assign <a href=\"mailto:bob@s.test\">bob@s.test</a><br></div>\
         <div>Hello Ann,</div><div>#close is what I will do</div>",
        "Hello Ann,\n#close is what I will do",
    )
    .expect("the commands are cut");
    assert!(!out.contains("resolve") && !out.contains("bob"), "{out}");
    assert!(out.contains("#close is what I will do"), "{out}");
}

#[test]
fn html_that_says_more_than_the_text_is_not_used() {
    // An unmarked quote (no container the stripper knows): the text part
    // dropped it, so the HTML must not carry it.
    let html = "<p>Hello Ann,</p><p>the invoice is attached.</p>\
                <div style=\"border-top: 1px solid\"><b>From:</b> Ann<br>order 4711</div>";
    assert_eq!(
        relay_html(html, "Hello Ann,\nthe invoice is attached."),
        None
    );
    assert_eq!(relay_html("<p></p>", "Hello"), None);
    assert_eq!(relay_html(&"<b>".repeat(MAX_TAGS + 1), "x"), None);
}

#[test]
fn alt_and_title_texts_cannot_say_more_than_the_text() {
    let text = "Hello Ann, the fix is deployed.";
    // A remote image's alt text becomes a visible link label.
    let tracker = "<p>Hello Ann, the fix is deployed.</p>\
        <img src=\"https://tracker.example/p.png\" alt=\"INTERNAL: fraud risk, refund denied\">";
    assert_eq!(relay_html(tracker, text), None);
    // An inline image's alt text shows when it does not load.
    let inline =
        "<p>Hello Ann, the fix is deployed.</p><img src=\"cid:x\" alt=\"VIP do not refund\">";
    assert_eq!(relay_html(inline, text), None);
    // A tooltip goes; the words stay.
    let tooltip =
        "<p title=\"internal note: VIP, do not refund\">Hello Ann, the fix is deployed.</p>";
    let relayed = relay_html(tooltip, text).expect("the same words");
    assert!(!relayed.contains("VIP"), "{relayed}");
    // An alt text the text part has (the text part shows [alt]) is fine.
    let honest = "<p>Hello Ann, the fix is deployed.</p><img src=\"cid:x\" alt=\"deployed\">";
    assert!(relay_html(honest, "Hello Ann, the fix is deployed. [deployed]").is_some());
}

#[test]
fn words_compare_in_order_and_ignore_case_and_punctuation() {
    let w = |s: &str| words(s);
    assert!(is_subsequence(&w("Hello, ANN"), &w("hello dear ann!")));
    assert!(!is_subsequence(&w("ann hello"), &w("hello ann")));
    assert_eq!(visible_text("<p>a &amp; b</p>"), " a & b ");
}

#[test]
fn an_inline_image_only_the_cut_signature_showed_stays_behind() {
    let file = |name: &str, cid: Option<&str>| Attachment {
        filename: name.into(),
        media_type: "image/png".into(),
        content_id: cid.map(str::to_string),
        sha256: String::new(),
        bytes: vec![1],
        span: None,
    };
    let files = [
        file("shot.png", Some("shot@x")),
        file("logo.png", Some("logo@x")),
        file("report.pdf", Some("pdf@x")),
        file("plain.txt", None),
    ];
    let original = "<p>Hello Ann,<img src=\"cid:shot@x\"></p><div class=\"gmail_signature\">\
                    <img src=\"cid:logo@x\"></div>";
    let relayed = relay_html(original, "Hello Ann,").expect("usable HTML");
    let names =
        |kept: Vec<&Attachment>| kept.iter().map(|f| f.filename.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(relayed_files(Some(original), Some(&relayed), &files)),
        ["shot.png", "report.pdf", "plain.txt"]
    );
    // HTML made from the text shows no image: every file goes, attached.
    assert_eq!(names(relayed_files(Some(original), None, &files)).len(), 4);
}
