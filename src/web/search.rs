//! The agents' search, `/agent?q=…` (the route and its key check are in
//! `agent`): tickets whose subject or messages, notes included, match,
//! best first, each with a snippet whose matching words are `<mark>`ed.
//! The marks come from the store as separate parts, never as markup, and
//! the template escapes every part: mail text cannot add a mark or a tag.
//! A query with nothing to search for is said so on the page. Agents only.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

use super::view::{display_subject, status_label};
use super::{WebState, read_store, render};
use crate::store::{SearchQuery, SnippetPart};

/// Hits shown on one page.
const HITS: usize = 50;

/// One ticket found.
#[derive(Debug, Clone)]
pub struct HitRow {
    pub number: i64,
    pub href: String,
    pub subject: String,
    pub status_label: &'static str,
    pub status_class: &'static str,
    /// The snippet is from an internal note.
    pub note: bool,
    pub parts: Vec<SnippetPart>,
}

#[derive(Template)]
#[template(path = "agent_search.html")]
struct SearchPage {
    query: String,
    /// Why the query cannot be searched, if it cannot.
    error: Option<String>,
    hits: Vec<HitRow>,
    /// Whether there may be more hits than shown.
    more: bool,
}

/// The results page for `input` (already admitted as an agent).
pub(super) async fn page(state: &WebState, input: &str) -> Response {
    let query = match SearchQuery::parse(input) {
        Ok(query) => query,
        Err(err) => {
            let page = SearchPage {
                query: input.to_string(),
                error: Some(format!("Nothing was searched: {err}.")),
                hits: Vec::new(),
                more: false,
            };
            return render(StatusCode::OK, &page);
        }
    };
    let found = read_store(state, "a search", move |s| s.search_tickets(&query, HITS)).await;
    match found {
        Ok(hits) => {
            let page = SearchPage {
                query: input.to_string(),
                error: None,
                more: hits.len() >= HITS,
                hits: hits
                    .into_iter()
                    .map(|h| HitRow {
                        number: h.number.0,
                        href: format!("/agent/t/{}", h.number.0),
                        subject: display_subject(&h.subject).to_string(),
                        status_label: status_label(h.status),
                        status_class: h.status.as_str(),
                        note: h.kind == "note",
                        parts: h.snippet.parts,
                    })
                    .collect(),
            };
            render(StatusCode::OK, &page)
        }
        Err(response) => response,
    }
}
