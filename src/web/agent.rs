//! Agent routes: `/agent` (the queue: every ticket, filter tabs, assignee)
//! and `/agent/t/N` (one ticket in full: notes, auto-replies, bounces and
//! our own mails included), with their attachments; and the agent check
//! `/metrics` uses on the main listener. Open only when `[web]
//! agent_token` is set, to an `Authorization: Bearer` header or to `?key=`
//! once, which sets an HttpOnly SameSite=Strict cookie. The key is
//! compared by its hash in constant time; the cookie holds its issue time
//! and a MAC over it keyed by a value derived from the key (never the key
//! itself), and is refused once older than [`COOKIE_SECONDS`] whatever the
//! browser does. Wrong keys are throttled per client address (`throttle`).
//! Without a valid credential every route here is the same 404 as an
//! unknown path; a throttled client gets 429.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::download::download;
use super::list::{ListQuery, ListView, list_view};
use super::view::{self, Entry, TicketHeading};
use super::{ClientIp, WebState, not_found, path_number, plain, read_store, render, render_sized};
use crate::domain::TicketNumber;

/// The cookie that keeps an agent signed in.
const COOKIE: &str = "postdesk_agent";
/// How long the cookie lasts: one working day.
const COOKIE_SECONDS: i64 = 12 * 60 * 60;
/// How far in the future an issue time may lie (a clock stepped back).
const COOKIE_SKEW_SECONDS: i64 = 60;

/// The configured agent key, kept only as digests.
pub struct AgentKey {
    key_digest: [u8; 32],
    /// Keys the cookie's MAC; derived from the key, never sent.
    cookie_secret: [u8; 32],
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
            cookie_secret: cookie.finalize().into(),
        })
    }

    /// Whether `candidate` is the key (constant time, any length).
    fn is_key(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        bool::from(digest.ct_eq(&self.key_digest))
    }

    /// The cookie value for a sign-in at `issued` (Unix seconds).
    fn cookie_value(&self, issued: i64) -> String {
        format!("{issued}.{}", hex::encode(self.cookie_mac(issued)))
    }

    fn cookie_mac(&self, issued: i64) -> [u8; 32] {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.cookie_secret) else {
            return [0; 32]; // unreachable: HMAC takes a key of any length
        };
        mac.update(issued.to_string().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `candidate` is a cookie we issued less than
    /// [`COOKIE_SECONDS`] before `now` (MAC compared in constant time).
    fn is_cookie(&self, candidate: &str, now: i64) -> bool {
        let Some((written, mac)) = candidate.split_once('.') else {
            return false;
        };
        let (Ok(issued), Ok(mac)) = (written.parse::<i64>(), hex::decode(mac)) else {
            return false;
        };
        if written != issued.to_string() {
            return false;
        }
        let age = now.saturating_sub(issued);
        (-COOKIE_SKEW_SECONDS..=COOKIE_SECONDS).contains(&age)
            && mac.len() == 32
            && bool::from(mac.ct_eq(&self.cookie_mac(issued)))
    }
}

/// Every `Authorization: Bearer` value of the request.
fn bearers(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .collect()
}

/// Why the request may not see agent pages, if it may not: admitted
/// (`None`) with a live cookie, or with the key (Bearer) unless `client`
/// is throttled; else the 404 of a closed route, or 429 while `client` is
/// throttled. A wrong Bearer counts against `client`. A live cookie is
/// admitted even then: it carries a MAC no one can guess, so a stranger
/// guessing keys from a shared address (a proxy, an office NAT) cannot
/// lock out the agents already signed in.
pub(super) fn refusal(state: &WebState, headers: &HeaderMap, client: IpAddr) -> Option<Response> {
    let now = chrono::Utc::now().timestamp();
    if let Some(key) = &state.agent
        && cookie_values(headers, COOKIE)
            .iter()
            .any(|value| key.is_cookie(value, now))
    {
        return None;
    }
    if let Some(wait) = state.guesses.blocked_for(client, Instant::now()) {
        return Some(too_many_guesses(wait));
    }
    let bearers = bearers(headers);
    if let Some(key) = &state.agent
        && bearers.iter().any(|b| key.is_key(b))
    {
        return None;
    }
    if !bearers.is_empty() {
        state.guesses.record_failure(client, Instant::now());
    }
    Some(not_found())
}

/// The answer while a client is throttled.
fn too_many_guesses(wait: Duration) -> Response {
    let mut response = plain(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many wrong keys from your address. Please try again in a minute.",
    );
    let seconds = wait.as_secs().max(1).to_string();
    if let Ok(value) = HeaderValue::from_str(&seconds) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
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
struct QueuePage<'a> {
    list: ListView<'a>,
    /// The search box's text (empty on the queue).
    query: String,
    /// The queue filter's links, where there are several queues.
    queues: Vec<QueueLink>,
}

/// One link of the queue filter (`?queue=NAME`, or every queue).
struct QueueLink {
    label: String,
    href: String,
    current: bool,
}

/// The queue filter: every queue, then each one (none for one queue).
fn queue_links(state: &WebState, current: Option<&str>) -> Vec<QueueLink> {
    let names = state.queue_list();
    if names.is_empty() {
        return Vec::new();
    }
    let every = QueueLink {
        label: "Every queue".to_string(),
        href: "/agent".to_string(),
        current: current.is_none(),
    };
    let each = names.into_iter().map(|name| QueueLink {
        href: format!("/agent?queue={name}"),
        current: current == Some(name.as_str()),
        label: name,
    });
    std::iter::once(every).chain(each).collect()
}

/// `/agent`'s query: the list's, and `q` to search (see `search`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct QueueQuery {
    #[serde(flatten)]
    list: ListQuery,
    q: Option<String>,
}

#[derive(Template)]
#[template(path = "agent_ticket.html")]
struct AgentTicketPage {
    heading: TicketHeading,
    requester: String,
    assignee: String,
    participants: Vec<String>,
    proposed_cc: Vec<String>,
    entries: Vec<Entry>,
}

#[derive(Template)]
#[template(path = "agent_signed_in.html")]
struct SignedInPage;

/// `/agent?filter=…&page=…`, `/agent?q=…` to search (or `?key=…` once,
/// to sign in).
pub async fn queue(
    State(state): State<WebState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    query: Result<Query<QueueQuery>, QueryRejection>,
) -> Response {
    let QueueQuery { list: query, q } = query.map(|q| q.0).unwrap_or_default();
    if let Some(given) = &query.key {
        return sign_in(&state, given, client);
    }
    if let Some(refused) = refusal(&state, &headers, client) {
        return refused;
    }
    if let Some(q) = q.filter(|q| !q.trim().is_empty()) {
        return super::search::page(&state, &q).await;
    }
    let (filter, page) = (query.filter(), query.page());
    // Only a configured queue's name is used (and put in links).
    let queue = query.queue.as_deref().and_then(|q| state.known_queue(q));
    let wanted = queue.clone();
    match read_store(&state, "the agents' queue", move |s| {
        s.agent_queue_of(wanted.as_deref(), filter, page)
    })
    .await
    {
        Ok(list) => {
            let queues = queue_links(&state, queue.as_deref());
            let list =
                list_view(&list, "/agent/t/", true).in_queue(queue.as_deref(), !queues.is_empty());
            let query = String::new();
            let bytes = list.html_bytes();
            let page = QueuePage {
                list,
                query,
                queues,
            };
            render_sized(StatusCode::OK, &page, bytes)
        }
        Err(response) => response,
    }
}

/// `/agent/t/N`: one ticket in full.
pub async fn ticket(
    State(state): State<WebState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers, client) {
        return refused;
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
                proposed_cc: detail.proposed_cc.clone(),
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
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Path((number, attachment)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers, client) {
        return refused;
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

/// `?key=`: the cookie if it is the key (unless `client` is throttled);
/// else the closed route's 404, counted against `client`.
fn sign_in(state: &WebState, given: &str, client: IpAddr) -> Response {
    if let Some(wait) = state.guesses.blocked_for(client, Instant::now()) {
        return too_many_guesses(wait);
    }
    match &state.agent {
        Some(key) if key.is_key(given) => {
            signed_in(key, chrono::Utc::now().timestamp(), state.secure_cookies)
        }
        _ => {
            state.guesses.record_failure(client, Instant::now());
            not_found()
        }
    }
}

/// The answer to a valid `?key=`: the cookie, and a page that moves on
/// to `/agent` (a same-site navigation, so the Strict cookie is sent) and
/// leaves the key out of the address the agent keeps working at.
fn signed_in(key: &AgentKey, now: i64, secure: bool) -> Response {
    let mut response = render(StatusCode::OK, &SignedInPage);
    let cookie = format!(
        "{COOKIE}={}; Path=/agent; Max-Age={COOKIE_SECONDS}; HttpOnly; SameSite=Strict{}",
        key.cookie_value(now),
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
    fn the_key_is_checked_exactly() {
        assert!(AgentKey::new("").is_none());
        let key = AgentKey::new("s3cret-agent-key").unwrap();
        assert!(key.is_key("s3cret-agent-key"));
        assert!(!key.is_key("s3cret-agent-kex"));
        assert!(!key.is_key(""));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  s3cret-agent-key "),
        );
        assert_eq!(bearers(&headers), ["s3cret-agent-key"]);
    }

    #[test]
    fn a_cookie_is_admitted_fresh_and_refused_old_or_forged() {
        let key = AgentKey::new("s3cret-agent-key").unwrap();
        let issued = 1_750_000_000;
        let cookie = key.cookie_value(issued);
        assert!(!cookie.contains("s3cret"));
        assert!(key.is_cookie(&cookie, issued));
        assert!(key.is_cookie(&cookie, issued + COOKIE_SECONDS));
        assert!(
            !key.is_cookie(&cookie, issued + COOKIE_SECONDS + 1),
            "too old, even if the browser still sends it"
        );
        assert!(
            !key.is_cookie(&cookie, issued - 3600),
            "issued in the future"
        );

        let (_, mac) = cookie.split_once('.').unwrap();
        let moved = format!("{}.{mac}", issued + 3600);
        assert!(
            !key.is_cookie(&moved, issued + 3600),
            "a new time, the old MAC"
        );
        let padded = format!("0{cookie}");
        assert!(
            !key.is_cookie(&padded, issued),
            "one issue time, one spelling"
        );
        let other = AgentKey::new("another-agent-key").unwrap();
        assert!(!other.is_cookie(&cookie, issued), "another key's cookie");
        for forged in ["", "1750000000", "1750000000.", "x.00", "s3cret-agent-key"] {
            assert!(!key.is_cookie(forged, issued), "{forged:?}");
        }
    }
}
