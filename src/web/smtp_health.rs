//! The SMTP login's part of `/healthz` and `/metrics`: which queues' SMTP
//! route the server refuses (recorded per route by the outbox sender in
//! the store, see `outbound::auth_watch`), and for how long. A refused
//! login holds that route's mail back, so `/healthz` is degraded while it
//! lasts. Only queue names, a flag and a duration: never the server's
//! words, which may name the account. Pure.

use std::fmt::Write as _;

use serde::Serialize;

use crate::store::SmtpAuthFailure;

/// `/healthz`'s `smtp` object.
#[derive(Debug, Serialize)]
pub(super) struct SmtpHealth {
    pub auth_failing: bool,
    /// Since the oldest refusal still lasting; `null` while every login
    /// works.
    pub auth_failing_seconds: Option<i64>,
    /// The queues whose mail waits for a refused login, by name; left
    /// out while every login works.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub auth_failing_queues: Vec<String>,
}

/// A `/healthz` body with the `smtp` part after the others.
#[derive(Debug, Serialize)]
pub(super) struct WithSmtp<T: Serialize> {
    #[serde(flatten)]
    pub health: T,
    pub smtp: SmtpHealth,
}

/// The `smtp` part from the recorded refusals, one per route.
pub(super) fn part(failures: &[SmtpAuthFailure], now_unix: i64) -> SmtpHealth {
    let mut queues: Vec<String> = failures.iter().flat_map(|f| f.queues.clone()).collect();
    queues.sort_unstable();
    queues.dedup();
    let oldest = failures.iter().map(|f| f.since.timestamp()).min();
    SmtpHealth {
        auth_failing: !failures.is_empty(),
        auth_failing_seconds: oldest.map(|since| (now_unix - since).max(0)),
        auth_failing_queues: queues,
    }
}

/// The `postdesk_smtp_auth_failing{queue=…}` gauge in the exposition
/// format: one sample per queue of `queues`, and per queue a refusal names
/// that the settings no longer have. Queue names are one word, safe
/// inside a label.
pub(super) fn exposition<'a>(
    queues: impl Iterator<Item = &'a str>,
    failures: &[SmtpAuthFailure],
) -> String {
    let failing = |queue: &str| failures.iter().any(|f| f.queues.iter().any(|q| q == queue));
    let mut samples: Vec<(String, bool)> = queues.map(|q| (q.to_string(), failing(q))).collect();
    for queue in failures.iter().flat_map(|f| &f.queues) {
        if !samples.iter().any(|(q, _)| q == queue) {
            samples.push((queue.clone(), true));
        }
    }
    let mut out = String::new();
    let name = "postdesk_smtp_auth_failing";
    let _ = writeln!(
        out,
        "# HELP {name} 1 while the SMTP server refuses the login of the queue's route \
         (its mail waits, pending)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (queue, failing) in samples {
        let _ = writeln!(out, "{name}{{queue=\"{queue}\"}} {}", u8::from(failing));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[derive(Serialize)]
    struct Base {
        status: &'static str,
    }

    fn billing(since: i64) -> SmtpAuthFailure {
        SmtpAuthFailure {
            route: "billing".into(),
            queues: vec!["billing".into()],
            hint: "mailbox[0].smtp.username and mailbox[0].smtp.password".into(),
            since: chrono::Utc.timestamp_opt(since, 0).unwrap(),
            error: "535 5.7.8 authentication failed for billing@example.test".into(),
        }
    }

    #[test]
    fn a_refused_login_shows_its_queues_a_flag_and_a_duration_only() {
        let body = WithSmtp {
            health: Base { status: "degraded" },
            smtp: part(&[billing(1_000)], 1_090),
        };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"status":"degraded","smtp":{"auth_failing":true,"auth_failing_seconds":90,"auth_failing_queues":["billing"]}}"#
        );
        assert!(!json.contains("535") && !json.contains('@') && !json.contains("password"));
        let fine = serde_json::to_string(&part(&[], 1_090)).unwrap();
        assert_eq!(
            fine,
            r#"{"auth_failing":false,"auth_failing_seconds":null}"#
        );
    }

    #[test]
    fn the_gauge_is_one_for_the_refused_queue_only() {
        let text = exposition(["support", "billing"].into_iter(), &[billing(1_000)]);
        assert!(text.contains("\npostdesk_smtp_auth_failing{queue=\"support\"} 0\n"));
        assert!(text.contains("\npostdesk_smtp_auth_failing{queue=\"billing\"} 1\n"));
        let fine = exposition(["support", "billing"].into_iter(), &[]);
        assert!(fine.contains("{queue=\"billing\"} 0\n") && !fine.contains("} 1"));
        // A route recorded under a queue since renamed still shows.
        let renamed = exposition(["support"].into_iter(), &[billing(1_000)]);
        assert!(renamed.contains("{queue=\"billing\"} 1\n"), "{renamed}");
    }
}
