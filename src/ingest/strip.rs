//! Strip: separates the new text of an email reply from its quoted history
//! and signature, for plain-text bodies (`strip_reply`) and HTML bodies
//! (`remove_html_quotes`). It owns the rules for attributions ("On … wrote:"
//! in many languages), Outlook header blocks, forward / original-message
//! markers, `>` quotes, signature delimiters and mobile-client signatures.
//! Siblings: `strip_rules.rs` (the rule tables, data only), `strip_blocks.rs`
//! (finding attributions, header blocks, markers), `strip_html.rs` (HTML
//! containers), `strip_tests.rs` (tests, including the labelled corpus).
//!
//! It must stay pure: no I/O, no clock, no logging, deterministic, and it
//! never panics on any input. It only ever decides what to show; the raw mail
//! is kept elsewhere, so a wrong cut loses nothing.
//!
//! How a plain-text body is read: every line gets a kind (empty, text, quote,
//! delimiter, code); attributions, header blocks and markers are found as
//! blocks (attributions may be wrapped over several lines). Then:
//! - the first delimiter ("-- ", "_____", …) ends the new text;
//! - text followed by a block: the new text is what comes before the block,
//!   unless the block is an attribution whose quote is interleaved with new
//!   text (an inline reply), which is kept without the attribution lines;
//! - a body that opens with a block (a bottom-post, a bare forward): the new
//!   text is what follows it, minus the quote right after an attribution;
//! - trailing quotes and mobile signatures ("Sent from my iPhone") go.

#[path = "strip_blocks.rs"]
mod blocks;
#[path = "strip_html.rs"]
mod html;
#[path = "strip_rules.rs"]
mod rules;

pub use html::remove_html_quotes;

use blocks::find_blocks;
use rules::{
    DELIMITER, FENCE, LINKS, MAX_SIGNATURE_CHARS, MAX_SIGNATURE_LINES, QUOTE, SIGNATURE_SET,
    STRONG_DELIMITER, WRAP_WIDTH,
};

/// The new text of a reply and what was cut from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    pub new_text: String,
    pub quoted: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Empty,
    Text,
    Code,
    Quote,
    Delim,
    /// Part of a block (attribution, header block, marker).
    Block,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BlockKind {
    Attribution,
    Headers,
    Marker,
}

#[derive(Clone, Copy, Debug)]
struct Block {
    start: usize,
    /// One past the last line.
    end: usize,
    kind: BlockKind,
}

/// Splits a plain-text body into the new text and the quoted history/signature.
pub fn strip_reply(body: &str) -> Stripped {
    let text = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let mut kinds: Vec<Kind> = lines.iter().map(|l| base_kind(l)).collect();
    mark_code(&lines, &mut kinds);
    let blocks = find_blocks(&lines, &mut kinds);
    let keep = decide(&lines, &mut kinds, &blocks);
    assemble(&lines, &keep)
}

fn is_blank(line: &str) -> bool {
    line.chars()
        .all(|c| c.is_whitespace() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{FEFF}'))
}

fn base_kind(line: &str) -> Kind {
    if is_blank(line) {
        Kind::Empty
    } else if QUOTE.is_match(line) {
        Kind::Quote
    } else if DELIMITER.is_match(line) {
        Kind::Delim
    } else {
        Kind::Text
    }
}

/// Lines between a pair of ``` fences are never classified.
fn mark_code(lines: &[&str], kinds: &mut [Kind]) {
    let fences: Vec<usize> = (0..lines.len())
        .filter(|&i| FENCE.is_match(lines[i]))
        .collect();
    for pair in fences.chunks_exact(2) {
        kinds[pair[0]..=pair[1]].fill(Kind::Code);
    }
}

fn is_text(kind: Kind) -> bool {
    matches!(kind, Kind::Text | Kind::Code)
}

/// Which lines are new text.
fn decide(lines: &[&str], kinds: &mut [Kind], blocks: &[Block]) -> Vec<bool> {
    let n = lines.len();
    let mut in_attribution = vec![false; n];
    for b in blocks.iter().filter(|b| b.kind == BlockKind::Attribution) {
        in_attribution[b.start..b.end].fill(true);
    }
    let end = signature_start(lines, kinds);
    let later_cut = |from: usize| {
        let mut later = blocks.iter().filter(|b| b.start >= from && b.start < end);
        later
            .find(|b| b.kind != BlockKind::Attribution)
            .map_or(end, |b| b.start)
    };
    let mut keep = vec![false; n];
    match blocks.iter().find(|b| b.start < end) {
        None => keep[..end].fill(true),
        Some(b) if kinds[..b.start].iter().any(|k| is_text(*k)) => {
            if b.kind == BlockKind::Attribution && interleaved(lines, kinds, b.end, end) {
                let stop = later_cut(b.end);
                (0..stop).for_each(|i| keep[i] = !in_attribution[i]);
            } else {
                keep[..b.start].fill(true);
            }
        }
        Some(b) => {
            let mut start = b.end;
            while b.kind == BlockKind::Attribution
                && start < end
                && (matches!(kinds[start], Kind::Empty | Kind::Quote) || in_attribution[start])
            {
                start += 1;
            }
            let stop = later_cut(start).max(start);
            (start..stop).for_each(|i| keep[i] = !in_attribution[i]);
        }
    }
    trim_tail(lines, kinds, &mut keep);
    keep
}

/// Index of the first delimiter that introduces a signature (or the end).
/// Delimiters followed by a long plain text (a markdown rule) become text.
fn signature_start(lines: &[&str], kinds: &mut [Kind]) -> usize {
    let n = lines.len();
    // Non-empty lines after each line, and whether quotes or blocks follow.
    let (mut filled_after, mut quoted_after) = (vec![0usize; n + 1], vec![false; n + 1]);
    for i in (0..n).rev() {
        filled_after[i] = filled_after[i + 1] + usize::from(kinds[i] != Kind::Empty);
        quoted_after[i] = quoted_after[i + 1] || matches!(kinds[i], Kind::Quote | Kind::Block);
    }
    for i in 0..n {
        if kinds[i] != Kind::Delim {
            continue;
        }
        let short = filled_after[i + 1] <= MAX_SIGNATURE_LINES;
        if STRONG_DELIMITER.is_match(lines[i]) || short || quoted_after[i + 1] {
            return i;
        }
        kinds[i] = Kind::Text;
    }
    n
}

/// Whether the quote after an attribution is interleaved with new text: a
/// run of text with quoted lines before and after it. A single text line
/// squeezed between quoted lines after a long quoted line that does not end
/// a sentence is the wrapped rest of that line, not an answer.
fn interleaved(lines: &[&str], kinds: &[Kind], from: usize, end: usize) -> bool {
    let quoted = |i: usize| matches!(kinds[i], Kind::Quote | Kind::Block);
    let opens_with_quote = (from..end)
        .find(|&i| kinds[i] != Kind::Empty)
        .is_some_and(quoted);
    let (Some(first_quote), Some(last_quote)) = (
        (from..end).find(|&i| quoted(i)),
        (from..end).rfind(|&i| quoted(i)),
    ) else {
        return false;
    };
    let mut i = first_quote;
    while opens_with_quote && i < last_quote {
        if !is_text(kinds[i]) {
            i += 1;
            continue;
        }
        let run_start = i;
        while i < last_quote && is_text(kinds[i]) {
            i += 1;
        }
        let above = lines[run_start - 1].trim_end();
        let wrapped = i - run_start == 1
            && quoted(run_start - 1)
            && quoted(i)
            && above.chars().count() >= WRAP_WIDTH
            && !above.ends_with(['.', '!', '?', ':']);
        if !wrapped {
            return true;
        }
    }
    false
}

fn is_device_signature(line: &str) -> bool {
    let cleaned = LINKS.replace_all(line, "");
    let cleaned = cleaned.trim();
    cleaned.chars().count() <= MAX_SIGNATURE_CHARS && SIGNATURE_SET.is_match(cleaned)
}

/// Drops trailing empty lines, trailing quotes (when there is new text) and
/// trailing mobile signatures.
fn trim_tail(lines: &[&str], kinds: &[Kind], keep: &mut [bool]) {
    let has_text = (0..keep.len()).any(|i| keep[i] && is_text(kinds[i]));
    for last in (0..keep.len()).rev() {
        if !keep[last] {
            continue;
        }
        let drop = match kinds[last] {
            Kind::Empty => true,
            Kind::Quote | Kind::Block => has_text,
            Kind::Text => is_device_signature(lines[last]),
            _ => false,
        };
        if !drop {
            break;
        }
        keep[last] = false;
    }
}

fn assemble(lines: &[&str], keep: &[bool]) -> Stripped {
    let pick = |want: bool| {
        let picked: Vec<&str> = lines
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k == want)
            .map(|(l, _)| *l)
            .collect();
        let first = picked
            .iter()
            .position(|l| !is_blank(l))
            .unwrap_or(picked.len());
        picked[first..].join("\n").trim_end().to_string()
    };
    Stripped {
        new_text: pick(true),
        quoted: pick(false),
    }
}

#[cfg(test)]
#[path = "strip_tests.rs"]
mod tests;
