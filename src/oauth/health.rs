//! What `/metrics` and `/healthz` show of a token source: whether tokens
//! come, and when not, since when and why. Pure: the token source records,
//! the web reads.

use serde::Serialize;

/// What `/metrics` and `/healthz` show of one token source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthHealth {
    /// The mailbox (queue) the tokens are for.
    pub label: String,
    /// `None` while tokens come (or none was needed yet).
    pub failing: Option<Failing>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    /// Unix seconds of the first failed refresh in a row.
    pub since_unix: i64,
    /// [`OAuthError::code`](super::OAuthError::code) of the latest failure.
    pub code: &'static str,
    pub needs_action: bool,
}

/// One mailbox's tokens in `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthReport {
    pub queue: String,
    /// "ok", "failing" (not long enough to count) or "down".
    pub state: &'static str,
    /// Why, while failing: "revoked", "refused", "no_refresh_token",
    /// "file" or "unreachable".
    pub error: Option<&'static str>,
    pub failing_seconds: Option<i64>,
}

impl OAuthHealth {
    /// Whether this counts as up at `now_unix`: tokens come, or they have
    /// failed for at most `grace` seconds for a reason time may cure. A
    /// failure someone must act on (a revoked refresh token) is down at
    /// once: waiting changes nothing.
    pub fn report(&self, queue: &str, now_unix: i64, grace: i64) -> OAuthReport {
        let Some(f) = &self.failing else {
            return OAuthReport {
                queue: queue.to_string(),
                state: "ok",
                error: None,
                failing_seconds: None,
            };
        };
        let seconds = (now_unix - f.since_unix).max(0);
        let down = f.needs_action || seconds > grace;
        OAuthReport {
            queue: queue.to_string(),
            state: if down { "down" } else { "failing" },
            error: Some(f.code),
            failing_seconds: Some(seconds),
        }
    }

    /// The `postdesk_oauth_ok` value: 1 while tokens come, else 0.
    pub fn ok(&self) -> bool {
        self.failing.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(code: &'static str, needs_action: bool) -> OAuthHealth {
        OAuthHealth {
            label: "support".to_string(),
            failing: Some(Failing {
                since_unix: 1_000,
                code,
                needs_action,
            }),
        }
    }

    #[test]
    fn a_revoked_token_is_down_at_once() {
        let r = failing("revoked", true).report("support", 1_001, 300);
        assert_eq!(
            (r.state, r.error, r.failing_seconds),
            ("down", Some("revoked"), Some(1))
        );
    }

    #[test]
    fn an_unreachable_endpoint_is_down_only_after_the_grace() {
        let h = failing("unreachable", false);
        assert_eq!(h.report("support", 1_300, 300).state, "failing");
        assert_eq!(h.report("support", 1_301, 300).state, "down");
        assert!(!h.ok());
        let fine = OAuthHealth {
            label: "support".to_string(),
            failing: None,
        };
        assert_eq!(fine.report("billing", 5, 300).state, "ok");
        assert!(fine.ok());
    }
}
