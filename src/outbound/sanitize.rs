//! Sanitize: an agent's own HTML made fit to relay to a customer. Cuts
//! what the text part dropped (quoted history via `strip::remove_html_quotes`,
//! the signature, the command lines at the top), then cleans with
//! `ammonia`: no scripts, event handlers, forms, frames or stylesheets; no
//! remote content loaded on open (a remote image becomes a link, `cid:`
//! images stay); links keep `rel="noopener noreferrer"`; inline styles
//! keep only layout and typography properties, never a `url()`.
//!
//! It must never let the HTML say more than the text part: the result's
//! words must be a subsequence of the text's words, or there is no result
//! (the caller then sends HTML made from the text). Pure.

use std::collections::HashSet;
use std::sync::LazyLock;

use ammonia::{Builder, UrlRelative};
use regex::{Regex, RegexBuilder};

use crate::ingest::parse::Attachment;
use crate::ingest::strip::remove_html_quotes;
use crate::outbound::mime::shows;

/// The agent's `html` as an HTML fragment fit for the customer, saying no
/// more than `text` (the text part, commands and quotes already removed);
/// `None` where it cannot be made so.
pub fn relay_html(html: &str, text: &str) -> Option<String> {
    if html.len() > MAX_HTML_BYTES {
        return None;
    }
    let unquoted = remove_html_quotes(html).unwrap_or_else(|| html.to_string());
    let body = without_leading_commands(&without_signature(&unquoted));
    // html5ever's cost grows with nesting; a real reply has few tags once
    // its quoted history is gone.
    if body.matches('<').count() > MAX_TAGS {
        return None;
    }
    let cleaned = clean(&body);
    // Compared as the customer may see it: with each image's alt text (a
    // remote image's becomes its link label, an inline one's shows when
    // it does not load); our own `[image]` label for one without is no
    // word of the agent's.
    let words = words(&visible_text(&with_alt_texts(&cleaned)));
    if words.is_empty() || !is_subsequence(&words, &self::words(text)) {
        return None;
    }
    Some(remote_images_as_links(&cleaned))
}

/// The agent's files that go with the relayed reply: all of them, less
/// the inline images that only the cut part (quote, signature) showed: an
/// image the agent's HTML shows and the relayed HTML (`relayed`, when the
/// agent's HTML is used) no longer does.
pub fn relayed_files<'a>(
    original: Option<&str>,
    relayed: Option<&str>,
    files: &'a [Attachment],
) -> Vec<&'a Attachment> {
    files
        .iter()
        .filter(|f| {
            let id = f.content_id.as_deref();
            match (original, relayed) {
                (Some(original), Some(relayed)) => !shows(original, id) || shows(relayed, id),
                _ => true,
            }
        })
        .collect()
}

/// Larger agent HTML is not relayed as HTML (the text part is).
const MAX_HTML_BYTES: usize = 1024 * 1024;
const MAX_TAGS: usize = 5_000;

fn build(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .expect("the sanitizer's patterns are literals and compile")
}

/// The start of a signature: a client's signature container (Gmail,
/// Thunderbird, Outlook, Apple Mail) or a `-- ` line.
static SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    build(concat!(
        r#"<(?:div|pre|p|span|table)\b[^>]*(?:\bclass\s*=\s*["']?[^"'>]*\b(?:gmail_signature|moz-signature|signature)\b"#,
        r#"|\bid\s*=\s*["']?(?:signature|Signature|ms-outlook-mobile-signature)\b"#,
        r#"|\bdata-smartmail\s*=\s*["']?gmail_signature)[^>]*>"#,
        r#"|(?:<br\s*/?>|<(?:p|div|pre)\b[^>]*>)\s*--(?:\s|&nbsp;|&#160;|\x{a0})*(?:<br\s*/?>|</?(?:p|div|pre)\b)"#,
    ))
});

/// `html` up to its signature, if it has one.
fn without_signature(html: &str) -> String {
    match SIGNATURE.find(html) {
        Some(m) => html[..m.start()].to_string(),
        None => html.to_string(),
    }
}

/// A tag, or a run of text between tags.
static TAG_OR_TEXT: LazyLock<Regex> = LazyLock::new(|| build(r"<[^>]*>|[^<]+"));

/// A tag that ends a line of text.
static LINE_END: LazyLock<Regex> =
    LazyLock::new(|| build(r"<br\b[^>]*>|</?(?:p|div|li|tr|td|table|ul|ol|pre|h[1-6])\b[^>]*>"));

/// Elements whose text is not shown (skipped when looking for the first line).
static HIDDEN_START: LazyLock<Regex> = LazyLock::new(|| build(r"^<(head|style|title|script)\b"));

/// `html` without the command lines at the top of its text (`#resolve`,
/// `#assign bob@…`): the text part has them removed by `read_commands`.
fn without_leading_commands(html: &str) -> String {
    let mut out = html.to_string();
    let mut pos = 0;
    while let Some(m) = TAG_OR_TEXT.find_at(&out, pos) {
        let (start, m_end) = (m.start(), m.end());
        let piece = m.as_str();
        if let Some(name) = HIDDEN_START.captures(piece).and_then(|c| c.get(1)) {
            let close = format!("</{}", name.as_str().to_ascii_lowercase());
            pos = out[m.end()..]
                .to_ascii_lowercase()
                .find(&close)
                .map_or(out.len(), |i| m.end() + i);
            continue;
        }
        if piece.starts_with('<') {
            pos = m.end();
            continue;
        }
        let text = decode(piece);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            pos = m.end();
            continue;
        }
        if !is_command_line(trimmed) {
            break;
        }
        let end = LINE_END
            .find_at(&out, m_end)
            .map_or(out.len(), |e| e.start());
        // Tags inside the line (an autolinked address) go with it; tags
        // left unbalanced are closed or dropped by the cleaner.
        out.replace_range(start..end, "");
        pos = start;
    }
    out
}

/// As `read_commands` reads a line at the top: `#` and a word.
fn is_command_line(line: &str) -> bool {
    line.starts_with('#') && !line.starts_with("# ") && line != "#"
}

/// The cleaner: what may stay of an agent's HTML.
static CLEANER: LazyLock<Builder<'static>> = LazyLock::new(|| {
    let mut b = Builder::default();
    b.add_tags(["font"])
        .add_clean_content_tags([
            "title", "iframe", "object", "embed", "noscript", "template", "svg", "math", "select",
            "textarea", "button", "audio", "video", "canvas", "frameset",
        ])
        .add_generic_attributes(["style", "dir", "align"])
        // A tooltip is text the text part does not have.
        .rm_generic_attributes(["title"])
        .add_tag_attributes("font", ["color", "face", "size"])
        .add_tag_attributes("table", ["border", "cellpadding", "cellspacing", "width"])
        .add_tag_attributes("td", ["valign", "width", "nowrap"])
        .add_tag_attributes("th", ["valign", "width", "nowrap"])
        .add_url_schemes(["cid"])
        .url_relative(UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .filter_style_properties(HashSet::from(STYLE_PROPERTIES))
        .attribute_filter(|_element, attribute, value| {
            if attribute == "style" && !is_plain_style(value) {
                return None;
            }
            Some(value.into())
        });
    b
});

/// Inline style properties an agent's HTML keeps: typography and box
/// layout; none that can carry an image or load anything.
const STYLE_PROPERTIES: [&str; 30] = [
    "color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "line-height",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "letter-spacing",
    "white-space",
    "vertical-align",
    "margin",
    "margin-top",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "padding",
    "padding-top",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "border",
    "border-collapse",
    "border-left",
    "width",
    "list-style-type",
    "background-color",
];

/// A style without anything that can load or run: `url(`, `image-set(`,
/// `expression(`, `@import`, `behavior`, `-moz-binding`, or a CSS escape
/// (which could spell any of those).
fn is_plain_style(style: &str) -> bool {
    let lower = style.to_ascii_lowercase();
    ![
        "url(",
        "image",
        "expression",
        "@import",
        "behavior",
        "binding",
        "\\",
        "/*",
    ]
    .iter()
    .any(|bad| lower.contains(bad))
}

fn clean(html: &str) -> String {
    CLEANER.clean(html).to_string()
}

/// Remote images (anything but `cid:`) after cleaning: a link to the image
/// instead, so that opening the mail loads nothing. The cleaner's output
/// quotes every attribute with `"` and escapes inside it.
static IMG: LazyLock<Regex> = LazyLock::new(|| build(r"<img\b[^>]*>"));
static SRC: LazyLock<Regex> = LazyLock::new(|| build(r#"\ssrc="([^"]*)""#));
static ALT: LazyLock<Regex> = LazyLock::new(|| build(r#"\salt="([^"]*)""#));

fn remote_images_as_links(cleaned: &str) -> String {
    IMG.replace_all(cleaned, |c: &regex::Captures| {
        let tag = &c[0];
        let src = SRC
            .captures(tag)
            .and_then(|s| s.get(1))
            .map_or("", |s| s.as_str());
        if src.to_ascii_lowercase().starts_with("cid:") {
            return tag.to_string();
        }
        let alt = ALT
            .captures(tag)
            .and_then(|s| s.get(1))
            .map_or("", |s| s.as_str());
        let label = if alt.trim().is_empty() {
            "image"
        } else {
            alt.trim()
        };
        if src.is_empty() {
            format!("[{label}]")
        } else {
            format!("<a href=\"{src}\" rel=\"noopener noreferrer\">[{label}]</a>")
        }
    })
    .into_owned()
}

/// `html` with each image replaced by its alt text, where it would show.
fn with_alt_texts(html: &str) -> String {
    IMG.replace_all(html, |c: &regex::Captures| {
        let alt = ALT.captures(&c[0]).and_then(|a| a.get(1));
        format!(" {} ", alt.map_or("", |a| a.as_str()))
    })
    .into_owned()
}

/// The text of cleaned HTML (well-formed, no script or style content).
fn visible_text(cleaned: &str) -> String {
    decode(
        &TAG_OR_TEXT
            .find_iter(cleaned)
            .map(|m| {
                if m.as_str().starts_with('<') {
                    " "
                } else {
                    m.as_str()
                }
            })
            .collect::<String>(),
    )
}

/// The entities the cleaner writes, and the common ones of mail clients.
fn decode(text: &str) -> String {
    text.replace("&nbsp;", " ")
        .replace("&#160;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Lower-cased words (runs of letters and digits).
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether every word of `small` occurs in `big`, in order.
fn is_subsequence(small: &[String], big: &[String]) -> bool {
    let mut rest = big.iter();
    small.iter().all(|w| rest.any(|b| b == w))
}

#[cfg(test)]
#[path = "sanitize_tests.rs"]
mod tests;
