//! HTML: the HTML part of a mail made from its text ([`html_from_text`]:
//! the seam the templates build on, and what a relayed reply gets when the
//! agent's own HTML cannot be used), and the pieces every HTML part of
//! ours shares: the document around a body, escaping, clickable links.
//! Only inline styles: no external CSS, no images, no scripts, so that
//! Outlook, Gmail, Apple Mail and Thunderbird show the same. Pure.

use std::sync::LazyLock;

use regex::Regex;

/// A whole HTML document around `body` (an HTML fragment).
pub fn document(body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\n\
         <body style=\"{FONT}\">\n{body}\n</body></html>\n"
    )
}

/// The font every part of ours uses (inline: clients drop `<style>`).
const FONT: &str = "font-family: Arial, Helvetica, sans-serif; font-size: 14px; \
                    line-height: 1.5; color: #222222;";

/// The HTML part of a mail whose text is `text`: the same words, escaped,
/// links clickable, blank lines as paragraphs, `> ` lines as a quote.
pub fn html_from_text(text: &str) -> String {
    document(&fragment_from_text(text))
}

/// [`html_from_text`] without the document around it.
pub fn fragment_from_text(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for paragraph in text.split("\n\n").map(|p| p.trim_matches('\n')) {
        if paragraph.trim().is_empty() {
            continue;
        }
        let quoted = paragraph.lines().all(|l| l.starts_with('>'));
        let lines: Vec<String> = paragraph
            .lines()
            .map(|l| {
                let l = if quoted {
                    l.trim_start_matches('>').trim_start()
                } else {
                    l
                };
                linkify(&escape(l))
            })
            .collect();
        let body = lines.join("<br>\n");
        if quoted {
            out.push_str(&format!(
                "<blockquote style=\"{QUOTE}\">{body}</blockquote>\n"
            ));
        } else {
            out.push_str(&format!("<p style=\"margin: 0 0 1em 0;\">{body}</p>\n"));
        }
    }
    out
}

const QUOTE: &str = "margin: 0 0 1em 0; padding-left: 10px; border-left: 3px solid #cccccc; \
                     color: #555555;";

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for text and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// http(s) URLs in escaped text (so `<` cannot occur in them; a trailing
/// `.`, `,` or `)` is punctuation, not URL).
static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"https?://[^\s<>]*[^\s<>.,;:!?)\]]").expect("the URL pattern is a literal")
});

/// Escaped text with its http(s) URLs made links.
pub fn linkify(escaped: &str) -> String {
    URL.replace_all(escaped, |c: &regex::Captures| {
        format!("<a href=\"{0}\" style=\"color: #1a5fb4;\">{0}</a>", &c[0])
    })
    .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_becomes_escaped_paragraphs_with_links() {
        let html = html_from_text(
            "Hello <b>Ann</b> & co,\nsee https://support.test/t/abc.\n\n> old\n> text\n",
        );
        assert!(
            html.contains("Hello &lt;b&gt;Ann&lt;/b&gt; &amp; co,<br>"),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="https://support.test/t/abc" style="color: #1a5fb4;">https://support.test/t/abc</a>."#),
            "{html}"
        );
        assert!(html.contains("<blockquote"), "{html}");
        assert!(html.contains("old<br>\ntext</blockquote>"), "{html}");
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn a_quote_in_a_url_cannot_leave_the_attribute() {
        let html = html_from_text("https://x.test/\"onmouseover=alert(1)");
        assert!(!html.contains("\"onmouseover"), "{html}");
        assert!(html.contains("&quot;onmouseover"), "{html}");
    }
}
