//! Health and metrics: `/healthz` (each part's state as JSON: the
//! database, the IMAP session, the outbox; 503 when one is down too long)
//! and `/metrics` in the Prometheus text format (mails ingested, tickets by
//! status, outbox pending and failed, IMAP connected, seconds since the
//! last successful fetch). Counts only: it must never expose an address,
//! a subject or a token. On the main listener `/metrics` is for agents
//! (key or cookie, else 404); the admin listener serves it open.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::view::status_label;
use super::{ClientIp, WebState, agent, read_store};
use crate::imap::ImapStatus;
use crate::store::StoreMetrics;

/// IMAP counts as down once it has been disconnected this long.
pub const IMAP_DOWN_SECONDS: i64 = 5 * 60;
/// The outbox counts as stuck once its oldest unsent mail is this old
/// (SMTP refuses or cannot be reached: retries back off for longer).
pub const OUTBOX_STUCK_SECONDS: i64 = 30 * 60;

/// What `/healthz` needs to know besides the live figures.
#[derive(Debug, Clone, Copy)]
pub struct HealthClock {
    /// When the web state was made (the daemon's start).
    pub started_unix: i64,
    /// The longest a live session goes without looking for mail (the IDLE
    /// refresh or the poll interval): `last_fetch_unix` is that stale at
    /// worst while connected.
    pub imap_look_seconds: i64,
}

/// What the health check saw; the pure input of [`health`].
#[derive(Debug, Clone, Copy)]
struct Seen {
    /// `None`: the database did not answer.
    backlog: Option<(i64, Option<i64>)>,
    imap_connected: bool,
    imap_last_fetch_unix: i64,
    now_unix: i64,
}

/// `/healthz`: 200 `{"status":"ok",…}` with each part's state, 503 with
/// `"status":"degraded"` when the database does not answer, IMAP has been
/// down for [`IMAP_DOWN_SECONDS`] or the oldest unsent mail is older than
/// [`OUTBOX_STUCK_SECONDS`].
pub async fn healthz(State(state): State<WebState>) -> Response {
    let read = read_store(&state, "the health check", |s| s.outbox_backlog()).await;
    let now = chrono::Utc::now();
    let seen = Seen {
        backlog: read
            .ok()
            .map(|(pending, oldest)| (pending, oldest.map(|t| t.timestamp()))),
        imap_connected: state.imap.is_connected(),
        imap_last_fetch_unix: state.imap.last_fetch_unix(),
        now_unix: now.timestamp(),
    };
    let (healthy, body) = health(&seen, state.health);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // A struct of strings and numbers always serialises.
    let json = serde_json::to_string(&body).unwrap_or_default();
    let mut response = (status, json).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The body of `/healthz`, fields in this order.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    database: &'static str,
    imap: ImapHealth,
    /// `null` when the database does not answer.
    outbox: Option<OutboxHealth>,
}

#[derive(Debug, Serialize)]
struct ImapHealth {
    connected: bool,
    last_fetch_seconds_ago: Option<i64>,
}

#[derive(Debug, Serialize)]
struct OutboxHealth {
    pending: i64,
    oldest_pending_seconds: Option<i64>,
}

/// Whether every part is up, and the JSON body; pure, for tests.
fn health(seen: &Seen, clock: HealthClock) -> (bool, Health) {
    let now = seen.now_unix;
    let last = seen.imap_last_fetch_unix;
    // While connected the last look is at most `imap_look_seconds` old, so
    // a session is surely lost from then on (from the start if none was).
    let lost_since = if last > 0 {
        last + clock.imap_look_seconds
    } else {
        clock.started_unix
    };
    let imap_up = seen.imap_connected || now - lost_since <= IMAP_DOWN_SECONDS;
    let imap = ImapHealth {
        connected: seen.imap_connected,
        last_fetch_seconds_ago: (last > 0).then(|| (now - last).max(0)),
    };
    let outbox = seen.backlog.map(|(pending, oldest)| OutboxHealth {
        pending,
        oldest_pending_seconds: oldest.map(|t| (now - t).max(0)),
    });
    let outbox_up = outbox.as_ref().is_some_and(|o| {
        o.oldest_pending_seconds
            .is_none_or(|age| age <= OUTBOX_STUCK_SECONDS)
    });
    let database = if outbox.is_some() { "ok" } else { "down" };
    let healthy = outbox.is_some() && imap_up && outbox_up;
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        database,
        imap,
        outbox,
    };
    (healthy, body)
}

/// `/metrics` on the main listener: only with the agent key or cookie.
pub async fn metrics_for_agents(
    State(state): State<WebState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Response {
    match agent::refusal(&state, &headers, client) {
        None => metrics(State(state)).await,
        Some(refused) => refused,
    }
}

/// `/metrics`: Prometheus text exposition format 0.0.4.
pub async fn metrics(State(state): State<WebState>) -> Response {
    let counts = match read_store(&state, "the metrics", |s| s.store_metrics()).await {
        Ok(counts) => counts,
        Err(response) => return response,
    };
    let body = exposition(&counts, &state.imap, chrono::Utc::now().timestamp());
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The exposition text; pure, for tests.
fn exposition(counts: &StoreMetrics, imap: &ImapStatus, now_unix: i64) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |value: String| vec![(String::new(), value)];
    metric(
        "postdesk_mails_ingested_total",
        "counter",
        "Mails stored, quarantined and ignored ones included.",
        &one(counts.mails_ingested.to_string()),
    );
    metric(
        "postdesk_mails_quarantined_total",
        "counter",
        "Mails kept in the quarantine: they could not be processed.",
        &one(counts.mails_quarantined.to_string()),
    );
    metric(
        "postdesk_mails_ignored_total",
        "counter",
        "Machine mails that answer no ticket, kept apart from the quarantine.",
        &one(counts.mails_ignored.to_string()),
    );
    let by_status: Vec<(String, String)> = counts
        .tickets_by_status
        .iter()
        .map(|(status, n)| (format!("{{status=\"{status}\"}}"), n.to_string()))
        .collect();
    metric(
        "postdesk_tickets",
        "gauge",
        &format!(
            "Tickets by status ({}).",
            counts
                .tickets_by_status
                .keys()
                .map(|s| status_label(*s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &by_status,
    );
    metric(
        "postdesk_outbox_pending",
        "gauge",
        "Outgoing mails waiting to be sent (or being sent).",
        &one(counts.outbox_pending.to_string()),
    );
    metric(
        "postdesk_outbox_failed",
        "gauge",
        "Outgoing mails that could not be delivered.",
        &one(counts.outbox_failed.to_string()),
    );
    let connected = imap.connected.load(Ordering::Relaxed);
    metric(
        "postdesk_imap_connected",
        "gauge",
        "1 while the IMAP session is up.",
        &one(u8::from(connected).to_string()),
    );
    metric(
        "postdesk_imap_fetched_total",
        "counter",
        "Mails fetched over IMAP since start.",
        &one(imap.fetched_total.load(Ordering::Relaxed).to_string()),
    );
    let last = imap.last_fetch_unix.load(Ordering::Relaxed);
    let since = if last > 0 {
        (now_unix - last).max(0).to_string()
    } else {
        "NaN".to_string()
    };
    metric(
        "postdesk_imap_seconds_since_last_fetch",
        "gauge",
        "Seconds since the last successful IMAP fetch; NaN before the first.",
        &one(since),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Status;

    const CLOCK: HealthClock = HealthClock {
        started_unix: 10_000,
        imap_look_seconds: 240,
    };

    fn check(seen: &Seen) -> (bool, serde_json::Value) {
        let (ok, body) = health(seen, CLOCK);
        (ok, serde_json::to_value(&body).unwrap())
    }

    fn seen(backlog: Option<(i64, Option<i64>)>, connected: bool, last: i64, now: i64) -> Seen {
        Seen {
            backlog,
            imap_connected: connected,
            imap_last_fetch_unix: last,
            now_unix: now,
        }
    }

    #[test]
    fn every_part_up_is_ok_with_its_state() {
        let (ok, body) = health(&seen(Some((0, None)), true, 10_100, 10_103), CLOCK);
        assert!(ok);
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"status":"ok","database":"ok","imap":{"connected":true,"last_fetch_seconds_ago":3},"outbox":{"pending":0,"oldest_pending_seconds":null}}"#
        );
        // Connected but quiet for long (a long IDLE) is still fine.
        assert!(check(&seen(Some((2, Some(10_000))), true, 10_000, 11_000)).0);
    }

    #[test]
    fn a_silent_database_is_degraded() {
        let (ok, body) = check(&seen(None, true, 10_100, 10_103));
        assert!(!ok);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["database"], "down");
    }

    #[test]
    fn imap_is_degraded_only_after_five_minutes_down() {
        // Never connected: counted from the start.
        let start = CLOCK.started_unix;
        assert!(check(&seen(Some((0, None)), false, 0, start + 300)).0);
        let (ok, body) = check(&seen(Some((0, None)), false, 0, start + 301));
        assert!(!ok);
        assert_eq!(
            body["imap"]["last_fetch_seconds_ago"],
            serde_json::Value::Null
        );
        // Lost after a fetch: the session may have lived one look longer.
        let last = start + 1_000;
        assert!(check(&seen(Some((0, None)), false, last, last + 240 + 300)).0);
        let (ok, body) = check(&seen(Some((0, None)), false, last, last + 240 + 301));
        assert!(!ok);
        assert_eq!(body["imap"]["connected"], false);
        assert_eq!(body["imap"]["last_fetch_seconds_ago"], 541);
    }

    #[test]
    fn mail_unsent_for_half_an_hour_is_degraded() {
        let now = 20_000;
        assert!(check(&seen(Some((3, Some(now - 1_800))), true, now, now)).0);
        let (ok, body) = check(&seen(Some((3, Some(now - 1_801))), true, now, now));
        assert!(!ok);
        assert_eq!(body["outbox"]["pending"], 3);
        assert_eq!(body["outbox"]["oldest_pending_seconds"], 1_801);
    }

    #[test]
    fn the_exposition_has_every_metric_once() {
        let mut counts = StoreMetrics {
            mails_ingested: 7,
            outbox_failed: 1,
            ..StoreMetrics::default()
        };
        counts.tickets_by_status.insert(Status::Open, 3);
        counts.tickets_by_status.insert(Status::Closed, 0);
        let imap = ImapStatus::default();
        let text = exposition(&counts, &imap, 1_000);
        assert!(
            text.contains("\npostdesk_mails_ingested_total 7\n"),
            "{text}"
        );
        assert!(text.contains("postdesk_tickets{status=\"open\"} 3\n"));
        assert!(text.contains("postdesk_tickets{status=\"closed\"} 0\n"));
        assert!(text.contains("postdesk_outbox_failed 1\n"));
        assert!(text.contains("postdesk_imap_connected 0\n"));
        assert!(text.contains("postdesk_imap_seconds_since_last_fetch NaN\n"));
        imap.last_fetch_unix.store(990, Ordering::Relaxed);
        imap.connected.store(true, Ordering::Relaxed);
        let text = exposition(&counts, &imap, 1_000);
        assert!(text.contains("postdesk_imap_seconds_since_last_fetch 10\n"));
        assert!(text.contains("postdesk_imap_connected 1\n"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            assert_eq!(text.matches(line).count(), 1, "{line}");
        }
    }
}
