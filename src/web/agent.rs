//! Agent routes: `/agent` (the queue: every ticket, filter tabs, assignee)
//! and `/agent/t/N` (one ticket in full: notes, auto-replies, bounces and
//! our own mails included), with their attachments. Open only when
//! `[web] agent_token` is set, to an `Authorization: Bearer` header or to
//! `?key=` once, which sets an HttpOnly SameSite=Strict cookie. The key is
//! compared by its hash in constant time and the cookie holds a value
//! derived from it, never the key itself. Without a valid credential every
//! route here is the same 404 as an unknown path.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::download::download;
use super::list::{ListQuery, ListView, list_view};
use super::view::{self, Entry, TicketHeading};
use super::{WebState, not_found, path_number, read_store, render};
use crate::domain::TicketNumber;

/// The cookie that keeps an agent signed in.
const COOKIE: &str = "postdesk_agent";
/// How long the cookie lasts: one working day.
const COOKIE_SECONDS: u32 = 12 * 60 * 60;

/// The configured agent key, kept only as digests.
pub struct AgentKey {
    key_digest: [u8; 32],
    cookie_value: String,
}

impl AgentKey {
    /// `None` for an empty key: the agent routes stay closed.
    pub fn new(key: &str) -> Option<AgentKey> {
        if key.is_empty() {
            return None;
        }
        let key_digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut cookie = Sha256::new();
        cookie.update(b"postdesk agent cookie\0");
        cookie.update(key_digest);
        Some(AgentKey {
            key_digest,
            cookie_value: hex::encode(cookie.finalize()),
        })
    }

    /// Whether `candidate` is the key (constant time, any length).
    fn is_key(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        bool::from(digest.ct_eq(&self.key_digest))
    }

    fn is_cookie(&self, candidate: &str) -> bool {
        candidate.len() == self.cookie_value.len()
            && bool::from(candidate.as_bytes().ct_eq(self.cookie_value.as_bytes()))
    }

    /// Whether the request carries the key (Bearer) or the cookie.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|key| self.is_key(key.trim()));
        bearer
            || cookie_values(headers, COOKIE)
                .iter()
                .any(|value| self.is_cookie(value))
    }
}

/// Every value of cookie `name` in the request's Cookie headers.
fn cookie_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_string())
        .collect()
}

#[derive(Template)]
#[template(path = "agent_queue.html")]
struct QueuePage {
    list: ListView,
}

#[derive(Template)]
#[template(path = "agent_ticket.html")]
struct AgentTicketPage {
    heading: TicketHeading,
    requester: String,
    assignee: String,
    participants: Vec<String>,
    entries: Vec<Entry>,
}

#[derive(Template)]
#[template(path = "agent_signed_in.html")]
struct SignedInPage;

/// `/agent?filter=…&page=…` (or `?key=…` once, to sign in).
pub async fn queue(
    State(state): State<WebState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Some(key) = state.agent.clone() else {
        return not_found();
    };
    let query = query.map(|q| q.0).unwrap_or_default();
    if let Some(given) = &query.key {
        return if key.is_key(given) {
            signed_in(&key, state.secure_cookies)
        } else {
            not_found()
        };
    }
    if !key.admits(&headers) {
        return not_found();
    }
    let (filter, page) = (query.filter(), query.page());
    match read_store(&state, "the agents' queue", move |s| {
        s.agent_queue(filter, page)
    })
    .await
    {
        Ok(list) => {
            let list = list_view(&list, |number| format!("/agent/t/{number}"), true);
            render(StatusCode::OK, &QueuePage { list })
        }
        Err(response) => response,
    }
}

/// `/agent/t/N`: one ticket in full.
pub async fn ticket(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    if !state.agent.as_ref().is_some_and(|k| k.admits(&headers)) {
        return not_found();
    }
    let Some(number) = path_number(&number) else {
        return not_found();
    };
    let found = read_store(&state, "an agent's ticket", move |s| {
        s.agent_ticket(TicketNumber(number))
    })
    .await;
    match found {
        Ok(Some(ticket)) => {
            let detail = &ticket.detail;
            let base = format!("/agent/t/{number}");
            let page = AgentTicketPage {
                heading: TicketHeading::of(&detail.summary),
                requester: detail.summary.requester.clone(),
                assignee: ticket.assignee.unwrap_or_else(|| "nobody".to_string()),
                participants: detail.participants.clone(),
                entries: view::agent_entries(&detail.messages, &base),
            };
            render(StatusCode::OK, &page)
        }
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

/// `/agent/t/N/a/ID`: any attachment of the ticket.
pub async fn attachment(
    State(state): State<WebState>,
    headers: HeaderMap,
    Path((number, attachment)): Path<(String, String)>,
) -> Response {
    if !state.agent.as_ref().is_some_and(|k| k.admits(&headers)) {
        return not_found();
    }
    let Some((number, attachment)) = path_number(&number).zip(path_number(&attachment)) else {
        return not_found();
    };
    let found = read_store(&state, "an attachment", move |s| {
        s.agent_attachment(TicketNumber(number), attachment)
    })
    .await;
    match found {
        Ok(Some(file)) => download(file),
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

/// The answer to a valid `?key=`: the cookie, and a page that moves on
/// to `/agent` (a same-site navigation, so the Strict cookie is sent) and
/// leaves the key out of the address the agent keeps working at.
fn signed_in(key: &AgentKey, secure: bool) -> Response {
    let mut response = render(StatusCode::OK, &SignedInPage);
    let cookie = format!(
        "{COOKIE}={}; Path=/agent; Max-Age={COOKIE_SECONDS}; HttpOnly; SameSite=Strict{}",
        key.cookie_value,
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_and_its_cookie_are_checked_exactly() {
        assert!(AgentKey::new("").is_none());
        let key = AgentKey::new("s3cret-agent-key").unwrap();
        assert!(key.is_key("s3cret-agent-key"));
        assert!(!key.is_key("s3cret-agent-kex"));
        assert!(!key.is_key(""));
        assert!(!key.cookie_value.contains("s3cret"));

        let mut headers = HeaderMap::new();
        assert!(!key.admits(&headers));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret-agent-key"),
        );
        assert!(key.admits(&headers));

        let mut headers = HeaderMap::new();
        let cookie = format!("theme=dark; {COOKIE}={}", key.cookie_value);
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(key.admits(&headers));
        let mut headers = HeaderMap::new();
        let cookie = format!("{COOKIE}=s3cret-agent-key");
        headers.insert(header::COOKIE, HeaderValue::from_str(&cookie).unwrap());
        assert!(!key.admits(&headers), "the key itself is not a cookie");
    }
}
