//! Customer routes: `/t/TOKEN` (one ticket), `/r/TOKEN` (all tickets of one
//! requester, with filter tabs and pages), a ticket opened from that list
//! (`/r/TOKEN/t/N`), and attachment downloads under the same token that
//! showed them. It must show public messages only, agents by display name
//! only, and must answer 404 for anything outside the token's scope.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::download::download;
use super::list::{ListQuery, ListView, list_view};
use super::view::{self, Entry, TicketHeading};
use super::{
    WebState, is_link_token, not_found, path_number, read_page, read_store, render, render_sized,
};
use crate::domain::TicketNumber;
use crate::store::TicketDetail;

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    heading: TicketHeading,
    entries: Vec<Entry>,
    /// The requester's list, when the ticket was opened from it.
    back: Option<String>,
}

#[derive(Template)]
#[template(path = "requester.html")]
struct RequesterPage<'a> {
    requester: &'a str,
    list: ListView<'a>,
}

/// `/t/TOKEN`: the ticket the link was made for.
pub async fn ticket(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    if !is_link_token(&token) {
        return not_found();
    }
    let lookup = token.clone();
    let found = read_page(&state, "a ticket page", move |s| s.ticket_page(&lookup)).await;
    match found {
        Ok(Some(ticket)) => ticket_page(&state, &ticket, &format!("/t/{token}"), None),
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

/// The page benchmark's floor (see `super::bench_router`): the ticket a
/// link opens, read as the page reads it, then a fixed body.
pub async fn read_floor(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    if !is_link_token(&token) {
        return not_found();
    }
    let found = read_page(&state, "a ticket link", move |s| s.ticket_of_link(&token)).await;
    match found {
        Ok(Some(_)) => {
            let body = axum::body::Bytes::from_static(&super::BENCH_BODY);
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
        }
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

/// `/t/TOKEN/a/ID`: an attachment of that ticket's public messages.
pub async fn ticket_attachment(
    State(state): State<WebState>,
    Path((token, attachment)): Path<(String, String)>,
) -> Response {
    let Some(attachment) = path_number(&attachment).filter(|_| is_link_token(&token)) else {
        return not_found();
    };
    let found = read_store(&state, "an attachment", move |s| {
        s.ticket_attachment(&token, attachment)
    })
    .await;
    match found {
        Ok(Some(file)) => download(file),
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

/// `/r/TOKEN?filter=…&page=…`: the requester's tickets.
pub async fn requester_list(
    State(state): State<WebState>,
    Path(token): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    if !is_link_token(&token) {
        return not_found();
    }
    let query = query.map(|q| q.0).unwrap_or_default();
    let (filter, page) = (query.filter(), query.page());
    let lookup = token.clone();
    let found = read_page(&state, "a requester page", move |s| {
        s.requester_page(&lookup, filter, page)
    })
    .await;
    match found {
        Ok(Some(page)) => {
            let row_base = format!("/r/{token}/t/");
            let list = list_view(&page.list, &row_base, false);
            let bytes = list.html_bytes();
            let page = RequesterPage {
                requester: &page.requester,
                list,
            };
            render_sized(StatusCode::OK, &page, bytes)
        }
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

/// `/r/TOKEN/t/N`: one of the requester's tickets.
pub async fn requester_ticket(
    State(state): State<WebState>,
    Path((token, number)): Path<(String, String)>,
) -> Response {
    let Some(number) = path_number(&number).filter(|_| is_link_token(&token)) else {
        return not_found();
    };
    let lookup = token.clone();
    let found = read_page(&state, "a requester's ticket", move |s| {
        s.requester_ticket(&lookup, TicketNumber(number))
    })
    .await;
    match found {
        Ok(Some(ticket)) => {
            let base = format!("/r/{token}/t/{number}");
            ticket_page(&state, &ticket, &base, Some(format!("/r/{token}")))
        }
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

/// `/r/TOKEN/t/N/a/ID`: an attachment of one of the requester's tickets.
pub async fn requester_attachment(
    State(state): State<WebState>,
    Path((token, number, attachment)): Path<(String, String, String)>,
) -> Response {
    let ids = path_number(&number).zip(path_number(&attachment));
    let Some((number, attachment)) = ids.filter(|_| is_link_token(&token)) else {
        return not_found();
    };
    let found = read_store(&state, "an attachment", move |s| {
        s.requester_attachment(&token, TicketNumber(number), attachment)
    })
    .await;
    match found {
        Ok(Some(file)) => download(file),
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

fn ticket_page(
    state: &WebState,
    ticket: &TicketDetail,
    base: &str,
    back: Option<String>,
) -> Response {
    // The customer sees the queue's display name ("Example Billing").
    let desk = state.queue_display_name(&ticket.summary.queue);
    let page = TicketPage {
        heading: TicketHeading {
            queue: desk.clone(),
            ..TicketHeading::of(&ticket.summary)
        },
        entries: view::customer_entries(&ticket.messages, &desk, base),
        back,
    };
    render(StatusCode::OK, &page)
}
