//! Block finding for `strip`: attributions (possibly wrapped over several
//! lines), header blocks and forward / original-message markers, using the
//! tables in `strip_rules.rs`. Lines are joined and matched only when short
//! (`MAX_RULE_LINE`), so that hostile input stays linear.

use super::rules::{
    FROM_ROLE, HEADER_LINE, HEADER_ROLES, LEAD_SET, LEAD_START, MARKER, MAX_RULE_LINE, MAX_WINDOW,
    Needs, TAIL_SET, tail_needs,
};
use super::{Block, BlockKind, Kind};
use std::collections::HashSet;

/// Quote depth of a line and the line without its `>` markers.
fn split_quote(line: &str) -> (usize, &str) {
    let mut depth = 0;
    for (i, c) in line.char_indices() {
        match c {
            '>' => depth += 1,
            ' ' | '\t' => {}
            _ => return (depth, line[i..].trim()),
        }
    }
    (depth, "")
}

/// The line without its first `depth` quote markers; None if it has fewer.
fn strip_depth(line: &str, depth: usize) -> Option<&str> {
    let mut seen = 0;
    for (i, c) in line.char_indices() {
        if seen == depth {
            return Some(line[i..].trim());
        }
        match c {
            '>' => seen += 1,
            ' ' | '\t' => {}
            _ => return None,
        }
    }
    (seen == depth).then_some("")
}

/// Lines `first..=last` joined with spaces, quote markers of the first line's
/// depth removed from each; None when too long or the quoting differs.
fn join_window(lines: &[&str], first: usize, last: usize) -> Option<String> {
    if lines[first].len() > MAX_RULE_LINE {
        return None;
    }
    let (depth, head) = split_quote(lines[first]);
    let mut joined = String::from(head);
    for line in &lines[first + 1..=last] {
        let part = if depth == 0 {
            line.trim()
        } else {
            strip_depth(line, depth)?
        };
        if !part.is_empty() {
            joined.push(' ');
            joined.push_str(part);
        }
        if joined.len() > MAX_RULE_LINE {
            return None;
        }
    }
    Some(joined)
}

/// Whether a line ends a sentence, so an attribution cannot go on after it.
fn ends_sentence(line: &str) -> bool {
    let t = line.trim_end();
    if t.ends_with(['!', '?']) {
        return true;
    }
    t.strip_suffix('.')
        .is_some_and(|rest| rest.chars().rev().take_while(|c| c.is_alphabetic()).count() >= 6)
}

fn satisfies(needs: Needs, text: &str) -> bool {
    let digit = text.chars().any(char::is_numeric);
    let at = text.contains('@');
    match needs {
        Needs::Nothing => true,
        Needs::Digit => digit,
        Needs::At => at,
        Needs::DigitOrAt => digit || at,
    }
}

fn header_role(line: &str) -> Option<usize> {
    if line.len() > MAX_RULE_LINE {
        return None;
    }
    let name = HEADER_LINE
        .captures(line)?
        .name("name")?
        .as_str()
        .to_lowercase();
    HEADER_ROLES.get(&name).copied()
}

/// Finds attribution, header and marker blocks, sorted by start, and marks
/// their lines as `Kind::Block`.
pub(super) fn find_blocks(lines: &[&str], kinds: &mut [Kind]) -> Vec<Block> {
    let n = lines.len();
    let free = |kinds: &[Kind], i: usize| !matches!(kinds[i], Kind::Code | Kind::Block);
    let mut blocks = Vec::new();
    let mut mark = |kinds: &mut [Kind], start: usize, end: usize, kind: BlockKind| {
        kinds[start..end].fill(Kind::Block);
        blocks.push(Block { start, end, kind });
    };

    // Forward / original-message markers, with the header block after them.
    for (i, line) in lines.iter().enumerate() {
        if free(kinds, i) && line.len() <= MAX_RULE_LINE && MARKER.is_match(line) {
            mark(kinds, i, i + 1, BlockKind::Marker);
        }
    }
    // Header blocks: at least three fields of distinct roles, one a sender;
    // a value may wrap onto up to two lines.
    let mut i = 0;
    while i < n {
        if !free(kinds, i) || header_role(lines[i]).is_none() {
            i += 1;
            continue;
        }
        let (mut roles, mut count, mut last, mut j) = (HashSet::new(), 0, i, i);
        while j < n && j <= last + 2 && free(kinds, j) && kinds[j] != Kind::Empty {
            if let Some(role) = header_role(lines[j]) {
                roles.insert(role);
                count += 1;
                last = j;
            }
            j += 1;
        }
        if count >= 3 && roles.len() >= 3 && roles.contains(&FROM_ROLE) {
            mark(kinds, i, last + 1, BlockKind::Headers);
        }
        // A block starting inside this run would hold a subset of it.
        i = last + 1;
    }
    // Attributions that open with a lead word, searched forwards.
    let mut i = 0;
    while i < n {
        let (_, head) = split_quote(lines[i]);
        if !free(kinds, i) || lines[i].len() > MAX_RULE_LINE || !LEAD_START.is_match(head) {
            i += 1;
            continue;
        }
        let mut found = None;
        for j in i..n.min(i + MAX_WINDOW) {
            if j > i {
                let (_, cont) = split_quote(lines[j]);
                if !free(kinds, j) || LEAD_START.is_match(cont) || ends_sentence(lines[j - 1]) {
                    break;
                }
            }
            let Some(joined) = join_window(lines, i, j) else {
                break;
            };
            if LEAD_SET.is_match(&joined) && satisfies(Needs::Digit, &joined) {
                found = Some(j);
                break;
            }
        }
        match found {
            Some(j) => {
                mark(kinds, i, j + 1, BlockKind::Attribution);
                i = j + 1;
            }
            None => i += 1,
        }
    }
    // Attributions recognised by their end, searched backwards from it.
    for j in 0..n {
        for first in (j.saturating_sub(2)..=j).rev() {
            let usable = (first..=j).all(|k| free(kinds, k) && kinds[k] != Kind::Empty);
            if !usable || (first..j).any(|k| ends_sentence(lines[k])) {
                break;
            }
            let Some(joined) = join_window(lines, first, j) else {
                break;
            };
            let hit = TAIL_SET
                .matches(&joined)
                .iter()
                .any(|m| satisfies(tail_needs(m), &joined));
            if hit {
                let (_, head) = split_quote(lines[first]);
                let starts_mid = head
                    .split_whitespace()
                    .next()
                    .is_some_and(|t| t.contains('@'));
                let mut start = first;
                if first > 0
                    && free(kinds, first - 1)
                    && kinds[first - 1] != Kind::Empty
                    && (starts_mid || lines[first - 1].trim_end().ends_with('<'))
                {
                    start = first - 1;
                }
                mark(kinds, start, j + 1, BlockKind::Attribution);
                break;
            }
        }
    }
    blocks.sort_by_key(|b| b.start);
    merge_blocks(lines, kinds, blocks)
}

/// A marker followed by a header block becomes one block, and a delimiter
/// line right before a block (Outlook's "_____") joins it.
fn merge_blocks(lines: &[&str], kinds: &mut [Kind], blocks: Vec<Block>) -> Vec<Block> {
    let mut merged: Vec<Block> = Vec::with_capacity(blocks.len());
    for mut b in blocks {
        let mut s = b.start;
        while s > 0 && kinds[s - 1] == Kind::Empty {
            s -= 1;
        }
        if s > 0 && kinds[s - 1] == Kind::Delim {
            kinds[s - 1..b.start].fill(Kind::Block);
            b.start = s - 1;
        }
        if let Some(prev) = merged.last_mut() {
            let gap = (prev.end..b.start)
                .all(|i| kinds[i] == Kind::Empty || split_quote(lines[i]).1.is_empty());
            if prev.kind == BlockKind::Marker && b.kind == BlockKind::Headers && gap {
                prev.end = b.end;
                continue;
            }
        }
        merged.push(b);
    }
    merged
}
