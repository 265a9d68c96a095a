//! Health and metrics: `/healthz` (each part's state as JSON: the
//! database, the IMAP sessions (all together, and each queue's mailbox),
//! the outbox; 503 when one is down too long) and `/metrics` in the
//! Prometheus text format (mails ingested, tickets by status, outbox
//! pending and failed, and per queue: IMAP connected, seconds since the
//! last successful fetch, and whether OAuth2 tokens come where a mailbox
//! logs in with XOAUTH2). Counts only: it must never expose an address,
//! a subject or a token. On the main listener `/metrics` is for agents
//! (key or cookie, else 404); the admin listener serves it open.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::view::status_label;
use super::{ClientIp, WebState, agent, read_store, smtp_health};
use crate::imap::ImapBoard;
use crate::oauth::{OAuthHealth, OAuthReport};
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
#[derive(Debug, Clone)]
struct Seen {
    /// `None`: the database did not answer.
    backlog: Option<(i64, Option<i64>)>,
    /// Each watched mailbox: (queue, connected, last fetch, unix seconds).
    imap: Vec<(String, bool, i64)>,
    /// Each mailbox that logs in with XOAUTH2: (queue, its tokens' health).
    oauth: Vec<(String, OAuthHealth)>,
    /// Each mailbox whose lease was asked for: (queue, its state).
    leases: Vec<(String, crate::imap::LeaseState)>,
    now_unix: i64,
}

/// `/healthz`: 200 `{"status":"ok",…}` with each part's state, 503 with
/// `"status":"degraded"` when the database does not answer, IMAP has been
/// down for [`IMAP_DOWN_SECONDS`], the oldest unsent mail is older than
/// [`OUTBOX_STUCK_SECONDS`] or the SMTP server refuses a route's login.
pub async fn healthz(State(state): State<WebState>) -> Response {
    let read = read_store(&state, "the health check", |s| s.outbox_backlog()).await;
    let login = read_store(&state, "the SMTP login", |s| s.smtp_auth_failures()).await;
    let now = chrono::Utc::now();
    let seen = Seen {
        backlog: read
            .ok()
            .map(|(pending, oldest)| (pending, oldest.map(|t| t.timestamp()))),
        imap: state
            .imap
            .mailboxes()
            .iter()
            .map(|(queue, s)| (queue.clone(), s.is_connected(), s.last_fetch_unix()))
            .collect(),
        oauth: oauth_health(&state.imap),
        leases: (state.imap.mailboxes().iter())
            .filter_map(|(queue, s)| Some((queue.clone(), s.lease()?)))
            .collect(),
        now_unix: now.timestamp(),
    };
    let (mut healthy, mut body) = health(&seen, state.health);
    // A refused SMTP login holds its route's mail back (`smtp_health`).
    let smtp = smtp_health::part(&login.unwrap_or_default(), now.timestamp());
    if smtp.auth_failing {
        (healthy, body.status) = (false, "degraded");
    }
    let body = smtp_health::WithSmtp { health: body, smtp };
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
    /// Every mailbox together: connected when all are, the oldest fetch.
    imap: ImapHealth,
    /// `null` when the database does not answer.
    outbox: Option<OutboxHealth>,
    /// Each queue's mailbox, with `"state": "up"` or `"down"`.
    mailboxes: Vec<MailboxHealth>,
    /// Each XOAUTH2 mailbox's tokens; left out where none logs in so.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    oauth: Vec<OAuthReport>,
}

#[derive(Debug, Serialize)]
struct ImapHealth {
    connected: bool,
    last_fetch_seconds_ago: Option<i64>,
}

#[derive(Debug, Serialize)]
struct MailboxHealth {
    queue: String,
    /// `up`, `down`, or `elsewhere` (another daemon holds its lease).
    state: &'static str,
    connected: bool,
    last_fetch_seconds_ago: Option<i64>,
    /// The daemon reading it (`host:pid:id`), once its lease was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    holder: Option<String>,
}

#[derive(Debug, Serialize)]
struct OutboxHealth {
    pending: i64,
    oldest_pending_seconds: Option<i64>,
}

/// Whether every part is up, and the JSON body; pure, for tests.
fn health(seen: &Seen, clock: HealthClock) -> (bool, Health) {
    let now = seen.now_unix;
    let mailboxes: Vec<MailboxHealth> = seen
        .imap
        .iter()
        .map(|(queue, connected, last)| {
            let mut health = mailbox_health(queue, *connected, *last, now, clock);
            if let Some((_, lease)) = seen.leases.iter().find(|(q, _)| q == queue) {
                health.holder = lease.holder.clone();
                if !lease.held_here {
                    // Another daemon reads it; its own /healthz reports it.
                    health.state = "elsewhere";
                }
            }
            health
        })
        .collect();
    let imap_up = mailboxes.iter().all(|m| m.state != "down");
    let ages: Option<Vec<i64>> = mailboxes.iter().map(|m| m.last_fetch_seconds_ago).collect();
    let imap = ImapHealth {
        connected: !mailboxes.is_empty() && mailboxes.iter().all(|m| m.connected),
        last_fetch_seconds_ago: ages.and_then(|a| a.into_iter().max()),
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
    let oauth: Vec<OAuthReport> = (seen.oauth.iter())
        .map(|(queue, h)| h.report(queue, now, IMAP_DOWN_SECONDS))
        .collect();
    let oauth_up = oauth.iter().all(|o| o.state != "down");
    let healthy = outbox.is_some() && imap_up && outbox_up && oauth_up;
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        database,
        imap,
        outbox,
        mailboxes,
        oauth,
    };
    (healthy, body)
}

/// One mailbox: down once disconnected for [`IMAP_DOWN_SECONDS`].
fn mailbox_health(
    queue: &str,
    connected: bool,
    last: i64,
    now: i64,
    clock: HealthClock,
) -> MailboxHealth {
    // While connected the last look is at most `imap_look_seconds` old, so
    // a session is surely lost from then on (from the start if none was).
    let lost_since = if last > 0 {
        last + clock.imap_look_seconds
    } else {
        clock.started_unix
    };
    let up = connected || now - lost_since <= IMAP_DOWN_SECONDS;
    MailboxHealth {
        queue: queue.to_string(),
        state: if up { "up" } else { "down" },
        connected,
        last_fetch_seconds_ago: (last > 0).then(|| (now - last).max(0)),
        holder: None,
    }
}

/// The health of each watched mailbox's OAuth2 token source, by queue.
fn oauth_health(imap: &ImapBoard) -> Vec<(String, OAuthHealth)> {
    (imap.mailboxes().iter())
        .filter_map(|(queue, s)| Some((queue.clone(), s.oauth.as_ref()?.health())))
        .collect()
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
    let mut body = exposition(&counts, &state.imap, chrono::Utc::now().timestamp());
    let login = read_store(&state, "the SMTP login", |s| s.smtp_auth_failures()).await;
    let queues = state.queue_names.iter().map(|(name, _)| name.as_str());
    body.push_str(&smtp_health::exposition(queues, &login.unwrap_or_default()));
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The exposition text; pure, for tests.
fn exposition(counts: &StoreMetrics, imap: &ImapBoard, now_unix: i64) -> String {
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
    // One sample per queue's mailbox; queue names are one word, safe
    // in a label.
    let per_queue = |value: &dyn Fn(&crate::imap::ImapStatus) -> String| {
        imap.mailboxes()
            .iter()
            .map(|(queue, s)| (format!("{{queue=\"{queue}\"}}"), value(s)))
            .collect::<Vec<_>>()
    };
    metric(
        "postdesk_imap_connected",
        "gauge",
        "1 while the queue's IMAP session is up.",
        &per_queue(&|s| u8::from(s.connected.load(Ordering::Relaxed)).to_string()),
    );
    let leases: Vec<(String, String)> = (imap.mailboxes().iter())
        .filter_map(|(queue, s)| {
            let lease = s.lease()?;
            let holder = lease.holder.unwrap_or_default();
            let holder = holder.replace(['"', '\\', '\n'], "_");
            Some((
                format!("{{queue=\"{queue}\",holder=\"{holder}\"}}"),
                u8::from(lease.held_here).to_string(),
            ))
        })
        .collect();
    metric(
        "postdesk_mailbox_lease_held",
        "gauge",
        "1 while this daemon holds the queue's mailbox lease (reads it); holder names who does.",
        &leases,
    );
    metric(
        "postdesk_imap_fetched_total",
        "counter",
        "Mails fetched over IMAP since start, per queue.",
        &per_queue(&|s| s.fetched_total.load(Ordering::Relaxed).to_string()),
    );
    let since = |s: &crate::imap::ImapStatus| {
        let last = s.last_fetch_unix.load(Ordering::Relaxed);
        if last > 0 {
            (now_unix - last).max(0).to_string()
        } else {
            "NaN".to_string()
        }
    };
    metric(
        "postdesk_imap_seconds_since_last_fetch",
        "gauge",
        "Seconds since the queue's last successful IMAP fetch; NaN before the first.",
        &per_queue(&since),
    );
    let oauth: Vec<(String, String)> = (oauth_health(imap).into_iter())
        .map(|(queue, h)| {
            (
                format!("{{queue=\"{queue}\"}}"),
                u8::from(h.ok()).to_string(),
            )
        })
        .collect();
    if !oauth.is_empty() {
        metric(
            "postdesk_oauth_ok",
            "gauge",
            "1 while the queue's OAuth2 access tokens come; 0 when refreshing fails \
             (a revoked refresh token: run postdesk oauth authorize).",
            &oauth,
        );
    }
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
            imap: vec![("support".to_string(), connected, last)],
            oauth: Vec::new(),
            leases: Vec::new(),
            now_unix: now,
        }
    }

    #[test]
    fn every_part_up_is_ok_with_its_state() {
        let (ok, body) = health(&seen(Some((0, None)), true, 10_100, 10_103), CLOCK);
        assert!(ok);
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"status":"ok","database":"ok","imap":{"connected":true,"last_fetch_seconds_ago":3},"outbox":{"pending":0,"oldest_pending_seconds":null},"mailboxes":[{"queue":"support","state":"up","connected":true,"last_fetch_seconds_ago":3}]}"#
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
    fn a_mailbox_another_daemon_reads_is_elsewhere_not_down() {
        let now = CLOCK.started_unix + 1_000;
        let lease = |held_here: bool, holder: &str| crate::imap::LeaseState {
            held_here,
            holder: Some(holder.to_string()),
        };
        let seen = Seen {
            backlog: Some((0, None)),
            imap: vec![
                ("support".to_string(), true, now - 2),
                ("billing".to_string(), false, 0),
            ],
            oauth: Vec::new(),
            leases: vec![
                ("support".to_string(), lease(true, "a:1:x")),
                ("billing".to_string(), lease(false, "b:2:y")),
            ],
            now_unix: now,
        };
        let (ok, body) = check(&seen);
        assert!(ok, "{body}");
        assert_eq!(body["mailboxes"][0]["state"], "up");
        assert_eq!(body["mailboxes"][0]["holder"], "a:1:x");
        assert_eq!(body["mailboxes"][1]["state"], "elsewhere");
        assert_eq!(body["mailboxes"][1]["holder"], "b:2:y");
        // Its own daemon being down is still seen: by that daemon's healthz.
        let mut mine = seen.clone();
        mine.leases[1].1 = lease(true, "a:1:x");
        assert!(!check(&mine).0, "held here and disconnected for long: down");
    }

    #[test]
    fn a_mailbox_whose_watcher_stopped_is_not_read_here_and_names_no_holder() {
        let status = crate::imap::ImapStatus::new();
        status.set_lease(crate::imap::LeaseState {
            held_here: true,
            holder: Some("a:1:x".to_string()),
        });
        status.stop_reading();
        let now = CLOCK.started_unix + 1_000;
        let seen = Seen {
            backlog: Some((0, None)),
            imap: vec![("support".to_string(), true, now - 2)],
            oauth: Vec::new(),
            leases: vec![("support".to_string(), status.lease().unwrap())],
            now_unix: now,
        };
        let (_, body) = check(&seen);
        assert_eq!(body["mailboxes"][0]["state"], "elsewhere", "{body}");
        assert!(body["mailboxes"][0].get("holder").is_none(), "{body}");
        // A lease another daemon took stays named as it was seen.
        let other = crate::imap::LeaseState {
            held_here: false,
            holder: Some("b:2:y".to_string()),
        };
        status.set_lease(other.clone());
        status.stop_reading();
        assert_eq!(status.lease(), Some(other));
    }

    #[test]
    fn healthz_names_the_mailbox_that_is_down() {
        let now = CLOCK.started_unix + 1_000;
        let two = Seen {
            backlog: Some((0, None)),
            imap: vec![
                ("support".to_string(), true, now - 2),
                ("billing".to_string(), false, 0),
            ],
            oauth: Vec::new(),
            leases: Vec::new(),
            now_unix: now,
        };
        let (ok, body) = check(&two);
        assert!(!ok);
        assert_eq!(body["mailboxes"][0]["queue"], "support");
        assert_eq!(body["mailboxes"][0]["state"], "up");
        assert_eq!(body["mailboxes"][1]["queue"], "billing");
        assert_eq!(body["mailboxes"][1]["state"], "down");
        assert_eq!(body["imap"]["connected"], false);
        // No mailbox read over IMAP (LMTP only): nothing is down.
        let none = Seen {
            imap: Vec::new(),
            ..two
        };
        assert!(check(&none).0);
    }

    #[test]
    fn a_revoked_oauth_token_is_degraded_at_once_and_named() {
        let now = CLOCK.started_unix + 10;
        let mut seen = seen(Some((0, None)), true, now - 1, now);
        let (ok, body) = check(&seen);
        assert!(ok, "no XOAUTH2 mailbox: nothing about tokens");
        assert!(body.get("oauth").is_none());
        let failing = |code, needs_action| OAuthHealth {
            label: "support".to_string(),
            failing: Some(crate::oauth::Failing {
                since_unix: now - 5,
                code,
                needs_action,
            }),
        };
        seen.oauth = vec![("support".to_string(), failing("unreachable", false))];
        assert!(check(&seen).0, "an unreachable endpoint is given time");
        seen.oauth = vec![("support".to_string(), failing("revoked", true))];
        let (ok, body) = check(&seen);
        assert!(!ok);
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["oauth"][0]["queue"], "support");
        assert_eq!(body["oauth"][0]["state"], "down");
        assert_eq!(body["oauth"][0]["error"], "revoked");
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
        let status = std::sync::Arc::new(crate::imap::ImapStatus::default());
        let imap = ImapBoard::single("support", status.clone());
        let text = exposition(&counts, &imap, 1_000);
        assert!(
            text.contains("\npostdesk_mails_ingested_total 7\n"),
            "{text}"
        );
        assert!(text.contains("postdesk_tickets{status=\"open\"} 3\n"));
        assert!(text.contains("postdesk_tickets{status=\"closed\"} 0\n"));
        assert!(text.contains("postdesk_outbox_failed 1\n"));
        assert!(text.contains("postdesk_imap_connected{queue=\"support\"} 0\n"));
        assert!(text.contains("postdesk_imap_seconds_since_last_fetch{queue=\"support\"} NaN\n"));
        status.last_fetch_unix.store(990, Ordering::Relaxed);
        status.connected.store(true, Ordering::Relaxed);
        let text = exposition(&counts, &imap, 1_000);
        assert!(text.contains("postdesk_imap_seconds_since_last_fetch{queue=\"support\"} 10\n"));
        assert!(text.contains("postdesk_imap_connected{queue=\"support\"} 1\n"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            assert_eq!(text.matches(line).count(), 1, "{line}");
        }
    }
}
