//! HTML quote containers for `strip`: finds the elements mail clients wrap
//! quoted history in and cuts them out with plain string work (no DOM), so
//! that broken HTML never makes it fail. All offsets come from regex matches
//! on the input, so slicing is always on character boundaries.

use regex::{Regex, RegexBuilder};
use std::sync::LazyLock;

fn build(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .expect("HTML quote patterns are literals and compile")
}

/// An opening or closing `div` / `blockquote` tag.
static TAG: LazyLock<Regex> = LazyLock::new(|| build(r"<(/?)(div|blockquote)\b[^>]*>"));

/// Containers removed as a whole element: Gmail, Apple Mail / Thunderbird
/// citations, Thunderbird's citation prefix, Yahoo, Lotus Notes' history
/// section, GMX / web.de's `name="quote"`.
static ELEMENT_QUOTE: LazyLock<Regex> = LazyLock::new(|| {
    build(concat!(
        r#"\bclass\s*=\s*["']?[^"'>]*\b(?:gmail_quote|moz-cite-prefix|yahoo_quoted|domino-section)\b"#,
        r#"|\btype\s*=\s*["']?cite\b"#,
        r#"|\bname\s*=\s*["']?quote\b"#,
        r#"|\bid\s*=\s*["']?yahoo_quoted"#,
    ))
});

/// Outlook's reply header: it and everything after it is history.
static TO_END_QUOTE: LazyLock<Regex> = LazyLock::new(|| {
    build(
        r#"\bid\s*=\s*["']?(?:divRplyFwdMsg|appendonsend|mail-editor-reference-message-container)\b"#,
    )
});

/// A horizontal rule right before Outlook's reply header.
static TRAILING_HR: LazyLock<Regex> = LazyLock::new(|| build(r"<hr\b[^>]*>\s*$"));

/// Removes quote containers from an HTML body (Gmail `div.gmail_quote` /
/// `blockquote.gmail_quote`, Apple Mail / Thunderbird `blockquote type="cite"`,
/// Outlook `div#divRplyFwdMsg` / `div#appendonsend` and everything after it,
/// `div.moz-cite-prefix`, Yahoo `yahoo_quoted`). Returns None when nothing
/// was found.
pub fn remove_html_quotes(html: &str) -> Option<String> {
    let mut out = String::with_capacity(html.len());
    let (mut copied, mut pos, mut found) = (0, 0, false);
    while let Some(caps) = TAG.captures_at(html, pos) {
        let Some(tag) = caps.get(0) else { break };
        pos = tag.end();
        if !caps.get(1).is_some_and(|c| c.as_str().is_empty()) {
            continue;
        }
        let attributes = tag.as_str();
        if TO_END_QUOTE.is_match(attributes) {
            let before = &html[copied..tag.start()];
            let cut = TRAILING_HR.find(before).map_or(before.len(), |m| m.start());
            out.push_str(&before[..cut]);
            return Some(out);
        }
        if !ELEMENT_QUOTE.is_match(attributes) {
            continue;
        }
        let name = caps.get(2).map_or("", |m| m.as_str());
        let end = element_end(html, tag.end(), name);
        out.push_str(&html[copied..tag.start()]);
        copied = end;
        pos = end;
        found = true;
    }
    found.then(|| {
        out.push_str(&html[copied..]);
        out
    })
}

/// End of the element whose opening tag ends at `from`: after its matching
/// closing tag, or the end of the input when it is never closed.
fn element_end(html: &str, from: usize, name: &str) -> usize {
    let mut depth = 1usize;
    for caps in TAG.captures_iter(&html[from..]) {
        let (Some(tag), Some(slash), Some(tag_name)) = (caps.get(0), caps.get(1), caps.get(2))
        else {
            continue;
        };
        if !tag_name.as_str().eq_ignore_ascii_case(name) {
            continue;
        }
        if slash.as_str().is_empty() {
            if !tag.as_str().ends_with("/>") {
                depth += 1;
            }
        } else {
            depth -= 1;
            if depth == 0 {
                return from + tag.end();
            }
        }
    }
    html.len()
}
