//! Search: agents find tickets by what their subjects and messages said
//! (table `message_search`, kept in the message's own transaction; see
//! migration V6: SQLite FTS5, or a tsvector on PostgreSQL, whose SQL is
//! `search_pg.rs`; on SQLite, V14 defers it to the transaction's end,
//! [`index_backlog`]). Owns the query language
//! (plain words all required, `"quoted phrases"`, a trailing `*` for a
//! prefix), which turns any input into a valid FTS5 expression or a clear
//! [`QueryError`], never an SQL error; the ranking (bm25, one hit per
//! ticket); and snippets whose marks come as separate parts, never as
//! markup, so each caller escapes text its own way. Reads only; it must
//! not be offered on a customer's page (notes are searched).

use std::collections::BTreeSet;

use super::db::{Backend, Tx};
use crate::sql_params as params;
use serde::Serialize;

use super::Store;
use crate::domain::{Status, TicketNumber};

/// Indexes the messages a SQLite write transaction noted in
/// `search_backlog` (migration V14), run by the writer just before each
/// commit, so a committed message is always searchable. Once per
/// transaction because FTS5 writes its pending terms out at every
/// savepoint: indexed in each mail's savepoint, a batch of mail made one
/// tiny index segment per mail and merged them again (~6% of ingest's
/// CPU). Should the index refuse a row, each message is indexed on its
/// own and one refused is left out of search with a warning: a mail is
/// never held back by its search entry (in its savepoint, it used to be
/// quarantined for it). An error of the database itself (disk, locks)
/// fails the commit instead, to be tried again.
pub(super) fn index_backlog(tx: &Tx) -> anyhow::Result<()> {
    let all = tx.execute(
        &format!("{INDEX_FROM_BACKLOG} FROM search_backlog b {INDEX_JOIN}"),
        params![],
    );
    if let Err(err) = all {
        if systemic(&err) {
            return Err(err); // the commit fails, the batch is tried again
        }
        let ids: Vec<i64> = tx
            .prepare("SELECT message_id FROM search_backlog")?
            .query_map(params![], |r| r.get(0))?
            .collect::<anyhow::Result<_>>()?;
        for id in ids {
            let one = tx.savepoint()?;
            let indexed = one.execute(
                &format!("{INDEX_FROM_BACKLOG} FROM search_backlog b {INDEX_JOIN} WHERE b.message_id = ?1"),
                params![id],
            );
            match indexed {
                Ok(_) => one.commit()?,
                Err(one_err) => tracing::warn!(
                    "Message {id} is stored but left out of search: {one_err:#} \
                     (the batch's index failed: {err:#})"
                ),
            }
        }
    }
    tx.execute("DELETE FROM search_backlog", params![])?;
    Ok(())
}

/// Whether a SQLite error is the database's state (disk, locks, memory)
/// rather than one row's: then no row is left out for it.
fn systemic(err: &anyhow::Error) -> bool {
    use rusqlite::ErrorCode::*;
    err.downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|code| {
            matches!(
                code,
                SystemIoFailure
                    | DiskFull
                    | DatabaseBusy
                    | DatabaseLocked
                    | OutOfMemory
                    | ReadOnly
                    | CannotOpen
                    | FileLockingProtocolFailed
                    | OperationInterrupted
            )
        })
}

/// What [`index_backlog`] inserts, and from where; the replacements
/// match V6's (snippet marks cannot be forged).
const INDEX_FROM_BACKLOG: &str = "INSERT INTO message_search (rowid, subject, body, ticket_number)
    SELECT m.id,
           replace(replace(t.subject, char(2), ' '), char(3), ' '),
           replace(replace(m.text, char(2), ' '), char(3), ' '),
           m.ticket_number";
const INDEX_JOIN: &str = "JOIN messages m ON m.id = b.message_id
    JOIN tickets t ON t.number = m.ticket_number";

/// What opens and closes a match in `snippet()`; the triggers replace
/// both in indexed text, so mail cannot forge a mark.
const MARK_OPEN: char = '\u{2}';
const MARK_CLOSE: char = '\u{3}';
/// Tokens a snippet shows around the matches.
const SNIPPET_TOKENS: i64 = 16;
/// Subject matches weigh more than body matches (bm25 column weights).
const SUBJECT_WEIGHT: f64 = 4.0;
/// Bounds on one query, so that a pasted page cannot keep a reader busy.
const MAX_QUERY_CHARS: usize = 500;
const MAX_TERMS: usize = 16;

/// Why a query cannot be searched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query has no words to search for (only punctuation or quotes)")]
    NoWords,
    #[error("the query is too long: at most {MAX_QUERY_CHARS} characters")]
    TooLong,
    #[error("the query has too many words: at most {MAX_TERMS}")]
    TooManyTerms,
}

/// One thing every hit must contain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// A word (or a word with punctuation inside, e.g. `e-mail`, which
    /// FTS5 reads as a phrase of its parts); `prefix` for `word*`.
    Word { text: String, prefix: bool },
    /// `"words in this order"`.
    Phrase(String),
}

/// A parsed query: every term must match (AND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    terms: Vec<Term>,
}

impl SearchQuery {
    /// Reads what a person typed: words, `"phrases"` (an unclosed quote
    /// runs to the end), `word*`. FTS5's own operators (`AND`, `OR`, `NOT`,
    /// `NEAR`, `-`, `^`, `:`, parentheses) are plain text here. Pure.
    pub fn parse(input: &str) -> Result<SearchQuery, QueryError> {
        if input.chars().count() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong);
        }
        let mut terms = Vec::new();
        for (i, chunk) in input.split('"').enumerate() {
            // Odd chunks were inside quotes.
            if i % 2 == 1 {
                if has_word(chunk) {
                    terms.push(Term::Phrase(
                        chunk.split_whitespace().collect::<Vec<_>>().join(" "),
                    ));
                }
                continue;
            }
            for word in chunk.split_whitespace() {
                let (text, prefix) = match word.strip_suffix('*') {
                    Some(stem) => (stem.trim_end_matches('*'), true),
                    None => (word, false),
                };
                if has_word(text) {
                    terms.push(Term::Word {
                        text: text.to_string(),
                        prefix,
                    });
                }
            }
        }
        match terms.len() {
            0 => Err(QueryError::NoWords),
            n if n > MAX_TERMS => Err(QueryError::TooManyTerms),
            _ => Ok(SearchQuery { terms }),
        }
    }

    /// The FTS5 expression: each term an FTS5 string (double quotes, inner
    /// quotes doubled), so no input is ever read as FTS5 syntax.
    pub fn fts_expression(&self) -> String {
        let quoted = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        self.terms
            .iter()
            .map(|t| match t {
                Term::Word { text, prefix: true } => format!("{} *", quoted(text)),
                Term::Word { text, .. } | Term::Phrase(text) => quoted(text),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The terms as typed (phrases without their quotes, prefixes with `*`).
    pub fn terms(&self) -> Vec<String> {
        self.terms
            .iter()
            .map(|t| match t {
                Term::Word { text, prefix } => format!("{text}{}", if *prefix { "*" } else { "" }),
                Term::Phrase(text) => text.clone(),
            })
            .collect()
    }
}

/// Whether FTS5's tokenizer finds a token in `text` (letters or digits).
fn has_word(text: &str) -> bool {
    text.chars().any(char::is_alphanumeric)
}

/// A piece of a snippet: a match (`marked`) or the text around one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnippetPart {
    pub text: String,
    pub marked: bool,
}

/// A few words around the best match, whitespace folded to single spaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snippet {
    pub parts: Vec<SnippetPart>,
}

impl Snippet {
    /// Splits `snippet()` output at the marks. Pure.
    fn from_marked(raw: &str) -> Snippet {
        let folded = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut parts: Vec<SnippetPart> = Vec::new();
        let mut marked = false;
        let mut text = String::new();
        let mut flush = |text: &mut String, marked: bool| {
            if !text.is_empty() {
                parts.push(SnippetPart {
                    text: std::mem::take(text),
                    marked,
                });
            }
        };
        for c in folded.chars() {
            match c {
                MARK_OPEN | MARK_CLOSE => {
                    flush(&mut text, marked);
                    marked = c == MARK_OPEN;
                }
                c => text.push(c),
            }
        }
        flush(&mut text, marked);
        Snippet { parts }
    }

    /// The snippet as plain text.
    pub fn text(&self) -> String {
        self.parts.iter().map(|p| p.text.as_str()).collect()
    }

    /// The marked words, in order, each once.
    pub fn matches(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for p in self.parts.iter().filter(|p| p.marked) {
            if !seen.contains(&p.text) {
                seen.push(p.text.clone());
            }
        }
        seen
    }

    /// The marks as `[start, end)` character offsets into [`Snippet::text`].
    pub fn highlights(&self) -> Vec<(usize, usize)> {
        let mut at = 0;
        let mut out = Vec::new();
        for p in &self.parts {
            let len = p.text.chars().count();
            if p.marked {
                out.push((at, at + len));
            }
            at += len;
        }
        out
    }
}

/// One ticket found, with the best-matching message's snippet.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub number: TicketNumber,
    pub subject: String,
    pub status: Status,
    /// The best message's rank, lower is better: bm25 on SQLite, ts_rank
    /// negated on PostgreSQL (not comparable across backends).
    pub score: f64,
    /// The kind of the message the snippet is from (`note`, `customer`, …).
    pub kind: String,
    pub snippet: Snippet,
}

impl Store {
    /// The `limit` tickets that best match `query`, best first: each
    /// ticket ranked by its best message (subject weighted), ties to the
    /// newer ticket.
    pub fn search_tickets(
        &self,
        query: &SearchQuery,
        limit: usize,
    ) -> anyhow::Result<Vec<SearchHit>> {
        self.read(|c| match c.backend() {
            Backend::Sqlite => fts_search(c, query, limit),
            Backend::Postgres => pg::search(c, query, limit),
        })
    }
}

/// [`Store::search_tickets`] on SQLite (FTS5).
fn fts_search(c: &Tx, query: &SearchQuery, limit: usize) -> anyhow::Result<Vec<SearchHit>> {
    let expression = query.fts_expression();
    best_messages(limit, |size| fts_window(c, &expression, size))?
        .into_iter()
        .map(|(message, score)| hit(c, &expression, message, score))
        .collect()
}

/// The best message of each of the `limit` best tickets, best first, from
/// `window(size)`: the best `size` matching messages (id, ticket, score;
/// best first, ties to the newer ticket). A ticket ranks by its best
/// message, so the first `limit` tickets among the best messages are the
/// answer: no grouping of every match (a common word matches most
/// messages). The window grows until it holds that many tickets or every
/// match.
fn best_messages(
    limit: usize,
    mut window: impl FnMut(i64) -> anyhow::Result<Vec<(i64, i64, f64)>>,
) -> anyhow::Result<Vec<(i64, f64)>> {
    let mut size = limit.saturating_mul(4).max(16);
    loop {
        let rows = window(i64::try_from(size).unwrap_or(i64::MAX))?;
        let every_match = rows.len() < size;
        let mut tickets = BTreeSet::new();
        let mut best = Vec::new();
        for (message, ticket, score) in rows {
            if best.len() < limit && tickets.insert(ticket) {
                best.push((message, score));
            }
        }
        if best.len() >= limit || every_match {
            return Ok(best);
        }
        size = size.saturating_mul(4);
    }
}

/// The best `size` messages matching the FTS5 `expression`.
fn fts_window(c: &Tx, expression: &str, size: i64) -> anyhow::Result<Vec<(i64, i64, f64)>> {
    window_rows(
        c,
        "SELECT rowid, ticket_number, bm25(message_search, ?2, 1.0) AS score
           FROM message_search WHERE message_search MATCH ?1
          ORDER BY score, ticket_number DESC LIMIT ?3",
        expression,
        size,
    )
}

/// Runs a window query of either backend: `?1` the query text, `?2` the
/// subject's weight, `?3` the window's size; rows (message, ticket, score).
pub(super) fn window_rows(
    c: &Tx,
    sql: &str,
    text: &str,
    size: i64,
) -> anyhow::Result<Vec<(i64, i64, f64)>> {
    let mut stmt = c.prepare_cached(sql)?;
    let rows = stmt.query_map(params![text, SUBJECT_WEIGHT, size], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, f64>(2)?,
        ))
    })?;
    rows.collect()
}

/// One hit: message `message`'s ticket and its snippet for `expression`.
fn hit(c: &Tx, expression: &str, message: i64, score: f64) -> anyhow::Result<SearchHit> {
    let mut stmt = c.prepare_cached(
        "SELECT message_search.ticket_number, t.subject, t.status, m.kind,
                snippet(message_search, -1, ?3, ?4, '…', ?5)
           FROM message_search JOIN tickets t ON t.number = message_search.ticket_number
           JOIN messages m ON m.id = message_search.rowid
          WHERE message_search MATCH ?1 AND message_search.rowid = ?2",
    )?;
    let marks = (MARK_OPEN.to_string(), MARK_CLOSE.to_string());
    let params = params![expression, message, marks.0, marks.1, SNIPPET_TOKENS];
    stmt.query_row(params, |r| {
        let status: String = r.get(2)?;
        let snippet: String = r.get(4)?;
        Ok(SearchHit {
            number: TicketNumber(r.get(0)?),
            subject: r.get(1)?,
            status: Status::parse(&status).unwrap_or(Status::Open),
            score,
            kind: r.get(3)?,
            snippet: Snippet::from_marked(&snippet),
        })
    })
}

#[path = "search_pg.rs"]
mod pg;

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
