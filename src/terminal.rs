//! Terminal: text from mail made safe to print on an operator's terminal
//! (and the one list of unsafe characters the page uses for file names).
//! A subject or a body can carry escape sequences (ESC [ … that recolour,
//! retitle or rewrite the screen), other control characters and bidi
//! overrides (which make text read backwards); printed raw, a customer's
//! mail could forge what `tickets list` shows. Each such character is
//! shown as a visible `\xNN` / `\u{NNNN}` escape instead. Only for the
//! command line's human output: JSON output stays exact. Pure.

use std::borrow::Cow;

/// One line of output: every control character escaped, line breaks and
/// tabs included.
pub fn line(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// A block of text: line breaks and tabs kept, other controls escaped.
pub fn block(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) && !keep(c) {
            match u32::from(c) {
                n if n < 0x100 => out.push_str(&format!("\\x{n:02x}")),
                n => out.push_str(&format!("\\u{{{n:04x}}}")),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// C0 and C1 controls, DEL, and the bidi and invisible format characters
/// that reorder or hide text (embeddings, overrides and isolates, the
/// marks, zero-width characters, line and paragraph separators), which
/// make `invoice\u{202E}fdp.exe` read as `invoiceexe.pdf`. The one rule
/// for the terminal and for file names on the page and in downloads.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}' | '\u{2029}'
            | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_bidi_are_made_visible() {
        let subject = "Invoice \u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}fdp.exe";
        let shown = line(subject);
        assert!(!shown.chars().any(is_unsafe), "{shown}");
        assert_eq!(shown, "Invoice \\x1b]0;pwned\\x07\\x1b[2J\\u{202e}fdp.exe");
        assert_eq!(line("a\nb"), "a\\x0ab");
        assert_eq!(block("a\nb\tc\u{9b}d"), "a\nb\tc\\x9bd");
        assert!(matches!(line("plain Grüße 回复"), Cow::Borrowed(_)));
    }
}
