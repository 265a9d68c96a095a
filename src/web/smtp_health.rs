//! The SMTP login's part of `/healthz` and `/metrics`: whether the server
//! refuses our login (recorded by the outbox sender in the store, see
//! `outbound::sender`), and for how long. A refused login is a fault of
//! ours that holds every mail back, so `/healthz` is degraded while it
//! lasts. Only a flag and a duration: never the server's words, which may
//! name the account. Pure.

use std::fmt::Write as _;

use serde::Serialize;

use crate::store::SmtpAuthFailure;

/// `/healthz`'s `smtp` object.
#[derive(Debug, Serialize)]
pub(super) struct SmtpHealth {
    pub auth_failing: bool,
    /// Since the first refusal; `null` while the login works.
    pub auth_failing_seconds: Option<i64>,
}

/// A `/healthz` body with the `smtp` part after the others.
#[derive(Debug, Serialize)]
pub(super) struct WithSmtp<T: Serialize> {
    #[serde(flatten)]
    pub health: T,
    pub smtp: SmtpHealth,
}

/// The `smtp` part from the recorded refusal, if any.
pub(super) fn part(failure: Option<&SmtpAuthFailure>, now_unix: i64) -> SmtpHealth {
    SmtpHealth {
        auth_failing: failure.is_some(),
        auth_failing_seconds: failure.map(|f| (now_unix - f.since.timestamp()).max(0)),
    }
}

/// The `postdesk_smtp_auth_failing` gauge in the exposition format.
pub(super) fn exposition(failing: bool) -> String {
    let mut out = String::new();
    let name = "postdesk_smtp_auth_failing";
    let _ = writeln!(
        out,
        "# HELP {name} 1 while the SMTP server refuses our login (mail waits, pending)."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {}", u8::from(failing));
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

    #[test]
    fn a_refused_login_shows_as_a_flag_and_a_duration_only() {
        let since = chrono::Utc.timestamp_opt(1_000, 0).unwrap();
        let failure = SmtpAuthFailure {
            since,
            error: "535 5.7.8 authentication failed for tickets@example.test".into(),
        };
        let body = WithSmtp {
            health: Base { status: "degraded" },
            smtp: part(Some(&failure), 1_090),
        };
        let json = serde_json::to_string(&body).unwrap();
        assert_eq!(
            json,
            r#"{"status":"degraded","smtp":{"auth_failing":true,"auth_failing_seconds":90}}"#
        );
        assert!(!json.contains("535") && !json.contains('@'));
        let fine = serde_json::to_string(&part(None, 1_090)).unwrap();
        assert_eq!(
            fine,
            r#"{"auth_failing":false,"auth_failing_seconds":null}"#
        );
        assert!(exposition(true).ends_with("\npostdesk_smtp_auth_failing 1\n"));
        assert!(exposition(false).ends_with("\npostdesk_smtp_auth_failing 0\n"));
    }
}
