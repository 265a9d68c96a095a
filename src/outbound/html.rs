//! HTML: the HTML part of a mail made from its text ([`html_from_text`]:
//! the seam the templates build on, and what a relayed reply gets when the
//! agent's own HTML cannot be used), and the pieces every HTML part of
//! ours shares: the document around a body, escaping, clickable links.
//! Only inline styles: no external CSS, no images, no scripts, so that
//! Outlook, Gmail, Apple Mail and Thunderbird show the same. Pure.

use std::borrow::Cow;
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

/// [`html_from_text`] without the document around it. Every mail of ours
/// runs this on the customer's or the agent's text inside the writer's
/// transaction, so it writes straight into one buffer: building each line
/// as its own strings was 4.5% of the writer's CPU in the ingest
/// benchmark (issue 16).
pub fn fragment_from_text(text: &str) -> String {
    let text = if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n"))
    } else {
        Cow::Borrowed(text)
    };
    let mut out = String::with_capacity(text.len() + text.len() / 4 + 64);
    let mut escaped = String::new();
    for paragraph in text.split("\n\n").map(|p| p.trim_matches('\n')) {
        if paragraph.trim().is_empty() {
            continue;
        }
        let quoted = paragraph.lines().all(|l| l.starts_with('>'));
        out.push_str(if quoted {
            QUOTE_OPEN
        } else {
            "<p style=\"margin: 0 0 1em 0;\">"
        });
        for (i, line) in paragraph.lines().enumerate() {
            if i > 0 {
                out.push_str("<br>\n");
            }
            let line = if quoted {
                line.trim_start_matches('>').trim_start()
            } else {
                line
            };
            if line.contains("http") {
                escaped.clear();
                escape_into(&mut escaped, line);
                linkify_into(&mut out, &escaped);
            } else {
                escape_into(&mut out, line); // no URL: nothing to link
            }
        }
        out.push_str(if quoted { "</blockquote>\n" } else { "</p>\n" });
    }
    out
}

/// How a quoted paragraph opens.
const QUOTE_OPEN: &str = "<blockquote style=\"margin: 0 0 1em 0; padding-left: 10px; \
                          border-left: 3px solid #cccccc; color: #555555;\">";

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for text and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    escape_into(&mut out, text);
    out
}

/// [`escape`] appended to `out`: the runs between special characters are
/// copied whole.
fn escape_into(out: &mut String, text: &str) {
    let mut run = 0;
    for (i, byte) in text.bytes().enumerate() {
        let entity = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        // ASCII bytes: `i` is a character boundary.
        out.push_str(&text[run..i]);
        out.push_str(entity);
        run = i + 1;
    }
    out.push_str(&text[run..]);
}

/// http(s) URLs in escaped text (so `<` cannot occur in them; a trailing
/// `.`, `,` or `)` is punctuation, not URL).
static URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"https?://[^\s<>]*[^\s<>.,;:!?)\]]").expect("the URL pattern is a literal")
});

/// Escaped text with its http(s) URLs made links, appended to `out`.
fn linkify_into(out: &mut String, escaped: &str) {
    let mut last = 0;
    for found in URL.find_iter(escaped) {
        let url = found.as_str();
        out.push_str(&escaped[last..found.start()]);
        out.push_str("<a href=\"");
        out.push_str(url);
        out.push_str("\" style=\"color: #1a5fb4;\">");
        out.push_str(url);
        out.push_str("</a>");
        last = found.end();
    }
    out.push_str(&escaped[last..]);
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

    /// The fragment as it was built before it wrote into one buffer
    /// (line by line, each its own strings): the output must not change.
    fn fragment_line_by_line(text: &str) -> String {
        let text = text.replace("\r\n", "\n");
        let mut out = String::new();
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
                    let escaped: String = l
                        .chars()
                        .map(|c| match c {
                            '&' => "&amp;".to_string(),
                            '<' => "&lt;".to_string(),
                            '>' => "&gt;".to_string(),
                            '"' => "&quot;".to_string(),
                            '\'' => "&#39;".to_string(),
                            c => c.to_string(),
                        })
                        .collect();
                    URL.replace_all(&escaped, |c: &regex::Captures| {
                        format!("<a href=\"{0}\" style=\"color: #1a5fb4;\">{0}</a>", &c[0])
                    })
                    .into_owned()
                })
                .collect();
            let body = lines.join("<br>\n");
            if quoted {
                out.push_str(&format!("{QUOTE_OPEN}{body}</blockquote>\n"));
            } else {
                out.push_str(&format!("<p style=\"margin: 0 0 1em 0;\">{body}</p>\n"));
            }
        }
        out
    }

    #[test]
    fn the_fragment_is_the_one_built_line_by_line() {
        let texts = [
            "",
            " \n\n \r\n",
            "plain",
            "Grüße, Ünïcode — ok\r\nzweite Zeile\r\n\r\n\r\nnext",
            "lone\rcarriage\r\n\n\n\nfour",
            "> q1\n>> q2\n>no space\n\nafter",
            "> q\nnot quoted\n> q",
            "see https://a.test/x?y=1&z='2' and http://b.test/(c), https://c.test/.",
            "http https:// http:/ ttp://x HTTPS://upper.test/ <https://d.test/>",
            "\"quotes\" & <tags> 'single' &amp; already",
            "https://e.test/ä?q=\u{1F600}#frag!\n\n> https://f.test/q",
            "\n\n\nleading and trailing\n\n\n",
        ];
        for text in texts {
            assert_eq!(
                fragment_from_text(text),
                fragment_line_by_line(text),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_quote_in_a_url_cannot_leave_the_attribute() {
        let html = html_from_text("https://x.test/\"onmouseover=alert(1)");
        assert!(!html.contains("\"onmouseover"), "{html}");
        assert!(html.contains("&quot;onmouseover"), "{html}");
    }
}
