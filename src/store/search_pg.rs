//! Search on PostgreSQL: the same answers as the FTS5 path in `search.rs`
//! (best message per ticket, the best `limit` tickets best first, ties to
//! the newer ticket, a snippet with separate marks) from the tsvector index
//! of migrations/postgres/V6 ('simple' configuration, subject weighted
//! 'A', body 'B'). Owns the tsquery text a parsed query becomes; the user's
//! words only ever travel as a bound parameter, never as SQL. 'simple'
//! folds case but neither stems nor folds accents, unlike SQLite's porter
//! unicode61 tokenizer: `invoice` does not find "invoices" here (`invoice*`
//! does). Reads only.

use super::{
    MARK_CLOSE, MARK_OPEN, SNIPPET_TOKENS, SearchHit, SearchQuery, Snippet, Term, best_messages,
    window_rows,
};
use crate::domain::{Status, TicketNumber};
use crate::sql_params as params;
use crate::store::db::Tx;

/// What the ellipsis is, as FTS5's `snippet()` is given it.
const ELLIPSIS: &str = "…";
/// How ts_headline's output spells a match's start and end, and a `<` of
/// the text: ts_headline drops what its parser takes for an HTML tag
/// (`<mark>`, `<b>`), so every `<` is given to it as [`LT_CODE`] (no tag
/// then) and read back. One prefix-free code over U+0002 and U+0003, which
/// the index's text never holds (the migration replaces them).
const OPEN_CODE: &str = "\u{2}";
const CLOSE_CODE: &str = "\u{3}\u{2}";
const LT_CODE: &str = "\u{3}\u{3}";
/// Characters of a column's start and end fetched beside its headline, to
/// tell whether the headline reaches them (an ellipsis where it does not).
const EDGE_CHARS: i64 = 4096;

/// The text for `to_tsquery('simple', …)`: every term a quoted lexeme
/// (quotes doubled, backslashes escaped), so nothing typed is read as a
/// tsquery operator; `:*` for a prefix; all terms required (`&`). A quoted
/// text of several words (a phrase, or `e-mail`) becomes `<->` between
/// its words in PostgreSQL's own parsing, as FTS5 reads a string. Pure.
pub(super) fn tsquery_text(query: &SearchQuery) -> String {
    let quoted = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"));
    query
        .terms
        .iter()
        .map(|t| match t {
            Term::Word { text, prefix: true } => format!("{}:*", quoted(text)),
            Term::Word { text, .. } | Term::Phrase(text) => quoted(text),
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

/// [`crate::store::Store::search_tickets`] on a PostgreSQL connection.
pub(super) fn search(c: &Tx, query: &SearchQuery, limit: usize) -> anyhow::Result<Vec<SearchHit>> {
    let text = tsquery_text(query);
    best_messages(limit, |size| window(c, &text, size))?
        .into_iter()
        .map(|(message, score)| hit(c, &text, message, score))
        .collect()
}

/// The best `size` matching messages (id, ticket, score), best first.
/// The score is ts_rank negated, so that lower is better as with bm25;
/// the subject's lexemes (weight A) count SUBJECT_WEIGHT times the body's
/// (B); normalization 1 divides by the log of the length, as bm25 too
/// prefers a short message that says it.
fn window(c: &Tx, text: &str, size: i64) -> anyhow::Result<Vec<(i64, i64, f64)>> {
    window_rows(
        c,
        "SELECT s.message_id, s.ticket_number,
                -(ts_rank(array[0, 0, 1 / ?2::float8, 1]::float4[], s.document, q, 1)::float8)
                  AS score
           FROM message_search s CROSS JOIN to_tsquery('simple', ?1) q
          WHERE s.document @@ q
          ORDER BY score, s.ticket_number DESC LIMIT ?3",
        text,
        size,
    )
}

/// One hit: message `message`'s ticket and its snippet. The headline of
/// the indexed part of each column (the index holds the first 10,000
/// characters of a subject, 200,000 of a body), with both column edges.
fn hit(c: &Tx, text: &str, message: i64, score: f64) -> anyhow::Result<SearchHit> {
    let mut stmt = c.prepare_cached(
        "SELECT s.ticket_number, t.subject, t.status, m.kind,
                ts_headline('simple', replace(b.text, '<', ?5), q, ?3),
                left(b.text, ?4), right(b.text, ?4),
                ts_headline('simple', replace(u.text, '<', ?5), q, ?3),
                left(u.text, ?4), right(u.text, ?4)
           FROM message_search s
           JOIN tickets t ON t.number = s.ticket_number
           JOIN messages m ON m.id = s.message_id
          CROSS JOIN to_tsquery('simple', ?1) q
          CROSS JOIN LATERAL (SELECT left(s.body, 200000) AS text) b
          CROSS JOIN LATERAL (SELECT left(s.subject, 10000) AS text) u
          WHERE s.message_id = ?2",
    )?;
    let options = headline_options();
    stmt.query_row(params![text, message, options, EDGE_CHARS, LT_CODE], |r| {
        let status: String = r.get(2)?;
        let body = Headline {
            marked: decode(&r.get::<_, String>(4)?),
            head: r.get(5)?,
            tail: r.get(6)?,
        };
        let subject = Headline {
            marked: decode(&r.get::<_, String>(7)?),
            head: r.get(8)?,
            tail: r.get(9)?,
        };
        Ok(SearchHit {
            number: TicketNumber(r.get(0)?),
            subject: r.get(1)?,
            status: Status::parse(&status).unwrap_or(Status::Open),
            score,
            kind: r.get(3)?,
            snippet: best_snippet(&subject, &body),
        })
    })
}

/// ts_headline's options: our marks, one fragment of about the words
/// FTS5's snippet shows; ShortWord=0 keeps a fragment's short edge words
/// ("The", "now"), which FTS5 keeps too.
fn headline_options() -> String {
    format!(
        "StartSel={OPEN_CODE}, StopSel={CLOSE_CODE}, MaxFragments=1, \
         MaxWords={SNIPPET_TOKENS}, MinWords={}, ShortWord=0",
        SNIPPET_TOKENS / 2
    )
}

/// ts_headline's output with our marks and the text's `<` back. Pure.
pub(super) fn decode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{2}' => out.push(MARK_OPEN),
            '\u{3}' => match chars.next() {
                Some('\u{2}') => out.push(MARK_CLOSE),
                Some('\u{3}') => out.push('<'),
                // Not ours (the codes are complete): dropped.
                _ => {}
            },
            c => out.push(c),
        }
    }
    out
}

/// One column's headline (marks decoded) and the start and end of the column's text.
#[derive(Debug)]
pub(super) struct Headline {
    pub(super) marked: String,
    pub(super) head: String,
    pub(super) tail: String,
}

/// The snippet from the column FTS5's `snippet(…, -1, …)` would pick: the
/// one whose fragment holds more distinct matched words (1000 each), then
/// more matches (1 each); a tie goes to the subject, the first column. Pure.
pub(super) fn best_snippet(subject: &Headline, body: &Headline) -> Snippet {
    let score = |s: &Snippet| {
        let marks = s.parts.iter().filter(|p| p.marked).count();
        let distinct = s.matches().len();
        distinct * 1000 + (marks - distinct)
    };
    let subject_snippet = Snippet::from_marked(&with_edges(subject));
    let body_snippet = Snippet::from_marked(&with_edges(body));
    if score(&body_snippet) > score(&subject_snippet) {
        body_snippet
    } else {
        subject_snippet
    }
}

/// The headline as FTS5's snippet would cut it: an ellipsis where it
/// stops short of the column's start or end (ts_headline has none), and
/// the punctuation before the first word or after the last one where it
/// reaches them (ts_headline drops it: "alone." would end "alone").
/// Letters and digits are compared, not what is around them. Pure.
pub(super) fn with_edges(h: &Headline) -> String {
    let edge = |c: char| !c.is_alphanumeric();
    let plain: String = h
        .marked
        .chars()
        .filter(|c| *c != MARK_OPEN && *c != MARK_CLOSE)
        .collect();
    let core = plain.trim_matches(edge);
    if core.is_empty() {
        return h.marked.clone();
    }
    let head = h.head.trim_start_matches(edge);
    let tail = h.tail.trim_end_matches(edge);
    let mut out = String::with_capacity(h.marked.len() + 2 * ELLIPSIS.len());
    if head.starts_with(core) {
        let before = &h.head[..h.head.len() - head.len()];
        let kept = &plain[..plain.len() - plain.trim_start_matches(edge).len()];
        out.push_str(before.strip_suffix(kept).unwrap_or_default());
    } else {
        out.push_str(ELLIPSIS);
    }
    out.push_str(&h.marked);
    if tail.ends_with(core) {
        let after = &h.tail[tail.len()..];
        let kept = &plain[plain.trim_end_matches(edge).len()..];
        out.push_str(after.strip_prefix(kept).unwrap_or_default());
    } else {
        out.push_str(ELLIPSIS);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headline(marked: &str, text: &str) -> Headline {
        Headline {
            marked: marked.to_string(),
            head: text.to_string(),
            tail: text.to_string(),
        }
    }

    #[test]
    fn every_term_is_a_quoted_lexeme_and_nothing_typed_is_an_operator() {
        let q = SearchQuery::parse(r#"printer "blank pages" driv* e-mail"#).unwrap();
        assert_eq!(
            tsquery_text(&q),
            "'printer' & 'blank pages' & 'driv':* & 'e-mail'"
        );
        let q = SearchQuery::parse(r"it's a\b !x y:* 'z' (a|b)").unwrap();
        assert_eq!(
            tsquery_text(&q),
            r"'it''s' & 'a\\b' & '!x' & 'y:':* & '''z''' & '(a|b)'"
        );
    }

    #[test]
    fn a_cut_edge_gets_an_ellipsis_and_a_whole_one_its_punctuation() {
        let whole = "The toner is empty: please send toner.";
        let marked = "The \u{2}toner\u{3} is empty: please send \u{2}toner\u{3}";
        assert_eq!(
            with_edges(&headline(marked, whole)),
            format!("{marked}."),
            "the dropped full stop is back"
        );
        let long = "Hello. The toner is empty: please send toner. Thanks, Bob";
        assert_eq!(with_edges(&headline(marked, long)), format!("…{marked}…"));
        let quoted = headline("\"\u{2}toner\u{3}!\"", "  \"toner!\"\r\n");
        assert_eq!(with_edges(&quoted), "  \"\u{2}toner\u{3}!\"\r\n");
        assert_eq!(
            with_edges(&headline("--", "--")),
            "--",
            "no words, as it was"
        );
    }

    #[test]
    fn the_codes_read_back_as_marks_and_angle_brackets() {
        let raw = "a \u{3}\u{3}mark>\u{2}rings\u{3}\u{2}\u{3}\u{3}/mark> \u{2}x\u{3}\u{2}\u{3}";
        assert_eq!(decode(raw), "a <mark>\u{2}rings\u{3}</mark> \u{2}x\u{3}");
        assert_eq!(
            format!("{OPEN_CODE}{CLOSE_CODE}{LT_CODE}"),
            "\u{2}\u{3}\u{2}\u{3}\u{3}"
        );
    }

    #[test]
    fn the_snippet_comes_from_the_column_fts5_would_pick() {
        let subject = headline("\u{2}Toner\u{3} empty", "Toner empty");
        let body = "The toner is empty: please send toner.";
        let twice = headline(
            "The \u{2}toner\u{3} is empty: please send \u{2}toner\u{3}",
            body,
        );
        assert_eq!(best_snippet(&subject, &twice).matches(), ["toner"]);
        assert!(best_snippet(&subject, &twice).text().starts_with("The"));
        let once = headline("The \u{2}toner\u{3} is empty", "The toner is empty");
        assert_eq!(
            best_snippet(&subject, &once).text(),
            "Toner empty",
            "a tie: the subject"
        );
        let none = headline("It will not move", "It will not move");
        assert_eq!(best_snippet(&subject, &none).text(), "Toner empty");
    }
}
