//! `postdesk tickets search QUERY [--json] [--limit N]`: the tickets whose
//! subject or messages (internal notes included) match, best first, each
//! with a snippet whose matching words are marked: bold on a terminal,
//! `[brackets]` otherwise, and in JSON the plain snippet with the marked
//! words and their character offsets. Mail text is escaped for the
//! terminal part by part, so a mark can only come from the search. Exit 0
//! (also with no hit), 2 for a query with nothing to search for.

use std::io::IsTerminal;
use std::process::ExitCode;

use serde::Serialize;

use crate::settings::Settings;
use crate::store::{SearchHit, SearchQuery, Snippet};
use crate::terminal;

/// Exit code for a query that cannot be searched (as for usage errors).
const EX_USAGE: u8 = 2;

/// One hit in `--json`.
#[derive(Debug, Serialize)]
struct JsonHit<'a> {
    number: i64,
    subject: &'a str,
    status: &'a str,
    /// bm25 of the best message: lower is better.
    score: f64,
    /// The kind of message the snippet is from (`customer`, `note`, …).
    kind: &'a str,
    snippet: String,
    /// The marked words, in order, each once.
    matches: Vec<String>,
    /// `[start, end)` character offsets of the marks in `snippet`.
    highlights: Vec<(usize, usize)>,
}

/// The whole `--json` answer: the query's terms as understood, and hits.
#[derive(Debug, Serialize)]
struct JsonAnswer<'a> {
    query: &'a str,
    terms: Vec<String>,
    hits: Vec<JsonHit<'a>>,
}

/// Runs the command; `words` are the query's words as given.
pub fn run(
    settings: &Settings,
    words: &[String],
    json: bool,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let input = words.join(" ");
    let query = match SearchQuery::parse(&input) {
        Ok(query) => query,
        Err(err) => {
            eprintln!("postdesk: cannot search for {:?}: {err}", input);
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let (store, _) = crate::app::open_store(settings)?;
    let hits = store.search_tickets(&query, limit.max(1))?;
    if json {
        let answer = JsonAnswer {
            query: &input,
            terms: query.terms(),
            hits: hits.iter().map(json_hit).collect(),
        };
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    if hits.is_empty() {
        eprintln!("postdesk: no ticket matches {}", terminal::line(&input));
        return Ok(ExitCode::SUCCESS);
    }
    let bold = std::io::stdout().is_terminal();
    for hit in &hits {
        println!(
            "#{}\t{}\t{}",
            hit.number,
            hit.status,
            terminal::line(&hit.subject)
        );
        let from = if hit.kind == "note" { " (note)" } else { "" };
        println!("\t{}{from}", shown(&hit.snippet, bold));
    }
    Ok(ExitCode::SUCCESS)
}

fn json_hit(hit: &SearchHit) -> JsonHit<'_> {
    JsonHit {
        number: hit.number.0,
        subject: &hit.subject,
        status: hit.status.as_str(),
        score: hit.score,
        kind: &hit.kind,
        snippet: hit.snippet.text(),
        matches: hit.snippet.matches(),
        highlights: hit.snippet.highlights(),
    }
}

/// The snippet for a terminal: each part escaped on its own, marks in
/// bold (`bold`) or in brackets. Pure.
fn shown(snippet: &Snippet, bold: bool) -> String {
    let (open, close) = if bold {
        ("\u{1b}[1m", "\u{1b}[0m")
    } else {
        ("[", "]")
    };
    snippet
        .parts
        .iter()
        .map(|p| {
            let text = terminal::line(&p.text);
            if p.marked {
                format!("{open}{text}{close}")
            } else {
                text.into_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SnippetPart;

    fn part(text: &str, marked: bool) -> SnippetPart {
        SnippetPart {
            text: text.to_string(),
            marked,
        }
    }

    #[test]
    fn marks_are_ours_and_mail_controls_are_escaped() {
        let snippet = Snippet {
            parts: vec![
                part("…the ", false),
                part("printer", true),
                part(" \u{1b}[2J on floor ", false),
                part("2", true),
            ],
        };
        assert_eq!(
            shown(&snippet, false),
            "…the [printer] \\x1b[2J on floor [2]"
        );
        let bold = shown(&snippet, true);
        assert_eq!(bold.matches('\u{1b}').count(), 4, "{bold:?}");
        assert!(bold.starts_with("…the \u{1b}[1mprinter\u{1b}[0m"));
    }
}
