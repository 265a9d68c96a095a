//! Health and metrics: `/healthz` (does the database answer) and
//! `/metrics` in the Prometheus text format (mails ingested, tickets by
//! status, outbox pending and failed, IMAP connected, seconds since the
//! last successful fetch). Counts only: it must never expose an address,
//! a subject or a token. On the main listener `/metrics` is for agents
//! (key or cookie, else 404); the admin listener serves it open.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::view::status_label;
use super::{ClientIp, WebState, agent, plain, read_store};
use crate::imap::ImapStatus;
use crate::store::StoreMetrics;

/// `/healthz`: 200 "ok" when the database answers, else 503.
pub async fn healthz(State(state): State<WebState>) -> Response {
    match read_store(&state, "the health check", |s| s.ping()).await {
        Ok(()) => plain(StatusCode::OK, "ok"),
        Err(_) => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database does not answer",
        ),
    }
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
        "Mails stored, quarantined ones included.",
        &one(counts.mails_ingested.to_string()),
    );
    metric(
        "postdesk_mails_quarantined_total",
        "counter",
        "Mails kept in the quarantine.",
        &one(counts.mails_quarantined.to_string()),
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
