//! Auth watch: whether the SMTP server refuses each route's login (one
//! account and its queues, see [`super::routes`]), how long that route's
//! mail waits before the next try, and the state recorded in the store for
//! `/healthz`, `/metrics` and `outbox list`. One route refused holds only
//! that route's mail; the others keep sending. It must not send mail or
//! decide what a reply means (the sender's `classify_failure` does); it
//! logs in only to probe, at start, a route with held mail or a recorded
//! refusal.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::mailer::Mailer;
use super::routes::SmtpRoutes;
use super::sender::{blocking, classify_failure};
use crate::store::{DeliveryResult, SmtpAuthFailure, Store};

/// Every route's login state, in the order of [`SmtpRoutes::routes`].
pub(super) struct AuthWatch {
    routes: Vec<RouteWatch>,
}

struct RouteWatch {
    name: String,
    queues: Vec<String>,
    hint: String,
    /// Whether the store holds a refusal for this route.
    failing: bool,
    /// Refusals in a row: the wait before the next try doubles with each.
    refusals: u32,
    /// While refused: when the next try is due; its mail is held till then.
    resume_at: Option<DateTime<Utc>>,
}

impl AuthWatch {
    pub(super) fn new(routes: &SmtpRoutes) -> AuthWatch {
        let routes = routes.routes().iter().map(|r| RouteWatch {
            name: r.name().to_string(),
            queues: r.queues.clone(),
            hint: r.hint.clone(),
            failing: false,
            refusals: 0,
            resume_at: None,
        });
        AuthWatch {
            routes: routes.collect(),
        }
    }

    /// At start: forgets the state of routes the settings no longer have,
    /// puts held mail back (the settings may be fixed), and logs in once
    /// on each route with held mail or a recorded refusal, so a fixed
    /// login clears `/healthz` even with no mail waiting and a still
    /// refused one holds its mail again without an attempt.
    pub(super) async fn start(&mut self, store: &Arc<Store>, mailers: &[Mailer], timeout: u64) {
        let names: Vec<String> = self.routes.iter().map(|r| r.name.clone()).collect();
        let now = Utc::now();
        let found = blocking(store, move |s| {
            s.forget_smtp_auth_failures_except(&names)?;
            Ok((s.smtp_auth_failures()?, s.release_held_outbox(now)?))
        })
        .await;
        let (recorded, held) = match found {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!("Cannot read the recorded SMTP login state: {err:#}");
                return;
            }
        };
        for (index, mailer) in mailers.iter().enumerate() {
            let Some(route) = self.routes.get_mut(index) else {
                continue;
            };
            route.failing = recorded.iter().any(|f| f.route == route.name);
            if route.failing || held.contains(&route.name) {
                self.probe(store, index, mailer, timeout).await;
            }
        }
    }

    async fn probe(&mut self, store: &Arc<Store>, index: usize, mailer: &Mailer, timeout: u64) {
        let limit = Duration::from_secs(timeout.saturating_mul(2));
        let result = match tokio::time::timeout(limit, mailer.test_connection()).await {
            Ok(Ok(())) => DeliveryResult::Sent,
            Err(_) => return,
            Ok(Err(err)) => classify_failure(err.status().map(u16::from), &err.to_string()),
        };
        self.observe(store, index, &result, Utc::now()).await;
    }

    /// When route `index`'s mail may be tried again, while its login is
    /// refused; `None` once it may be tried now.
    pub(super) fn held_until(&self, index: usize, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let resume = self.routes.get(index)?.resume_at?;
        (resume > now).then_some(resume)
    }

    /// Records what an attempt on route `index` says about its login:
    /// refused, or past it (sent, or a reply to the mail itself); a
    /// network error says nothing. The store is written only on a change
    /// (and every 16th refusal, for the server's latest words).
    pub(super) async fn observe(
        &mut self,
        store: &Arc<Store>,
        index: usize,
        result: &DeliveryResult,
        now: DateTime<Utc>,
    ) {
        let Some(route) = self.routes.get_mut(index) else {
            return;
        };
        let written = match result {
            DeliveryResult::AuthFailed(error) => {
                route.refusals = route.refusals.saturating_add(1);
                let wait = backoff(route.refusals);
                route.resume_at = Some(now + wait);
                let first = !std::mem::replace(&mut route.failing, true);
                if first {
                    tracing::error!(
                        "The SMTP server refuses the login for queue {}: its mail waits, \
                         pending, while other queues' mail goes on; fix {} and restart. \
                         The server said: {error}",
                        route.queues.join(", "),
                        route.hint
                    );
                } else if route.refusals % 16 != 1 {
                    return;
                }
                let failure = route.failure(error, now);
                blocking(store, move |s| s.set_smtp_auth_failure(&failure)).await
            }
            DeliveryResult::Sent | DeliveryResult::Permanent(_) => {
                route.refusals = 0;
                route.resume_at = None;
                if !std::mem::replace(&mut route.failing, false) {
                    return;
                }
                tracing::info!(
                    "The SMTP server accepts the login for queue {} again.",
                    route.queues.join(", ")
                );
                let name = route.name.clone();
                blocking(store, move |s| s.clear_smtp_auth_failure(&name)).await
            }
            DeliveryResult::Temporary(_) => return,
        };
        if let Err(err) = written {
            tracing::warn!("Cannot record the SMTP login state: {err:#}");
        }
    }
}

impl RouteWatch {
    fn failure(&self, error: &str, now: DateTime<Utc>) -> SmtpAuthFailure {
        SmtpAuthFailure {
            route: self.name.clone(),
            queues: self.queues.clone(),
            hint: self.hint.clone(),
            since: now,
            error: error.to_string(),
        }
    }
}

/// 5 s after the first refusal, doubling, at most 5 minutes.
fn backoff(refusals: u32) -> chrono::Duration {
    let exponent = refusals.saturating_sub(1).min(6);
    chrono::Duration::seconds((5i64 << exponent).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn refused_logins_back_off_with_a_cap() {
        assert_eq!(backoff(1).num_seconds(), 5);
        assert_eq!(backoff(2).num_seconds(), 10);
        assert_eq!(backoff(40).num_seconds(), 300);
    }

    /// Two routes: the global `[smtp]` (support) and billing's own.
    fn watch() -> AuthWatch {
        let env = [
            ("POSTDESK__MAILBOX__0__QUEUE", "billing"),
            ("POSTDESK__MAILBOX__0__ADDRESS", "billing@shop.test"),
            ("POSTDESK__MAILBOX__0__IMAP__ENABLED", "false"),
            ("POSTDESK__MAILBOX__0__SMTP__PASSWORD", "WRONG"),
        ];
        let env = env.map(|(k, v)| (k.to_string(), v.to_string())).to_vec();
        let settings = Settings::load_with_env(None, env).unwrap();
        let queues = settings.queues().into_iter().map(|q| (q, None)).collect();
        AuthWatch::new(&SmtpRoutes::new(queues))
    }

    #[tokio::test]
    async fn a_refusal_holds_only_its_own_route_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("t.db")).unwrap());
        let mut watch = watch();
        let now = Utc::now();
        let refused = DeliveryResult::AuthFailed("permanent error (535): 5.7.8 no".into());
        watch.observe(&store, 1, &refused, now).await;
        assert_eq!(watch.held_until(1, now), Some(now + backoff(1)));
        assert_eq!(watch.held_until(0, now), None, "support keeps sending");
        assert_eq!(watch.held_until(1, now + backoff(1)), None, "tried again");
        // Support's mail going out says nothing about billing's login.
        watch.observe(&store, 0, &DeliveryResult::Sent, now).await;
        let recorded = store.smtp_auth_failures().unwrap();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0].route, "billing");
        assert_eq!(recorded[0].queues, ["billing"]);
        assert_eq!(
            recorded[0].hint,
            "mailbox[0].smtp.username and mailbox[0].smtp.password"
        );
        // A second refusal waits longer; billing's own success clears it.
        watch.observe(&store, 1, &refused, now).await;
        assert_eq!(watch.held_until(1, now), Some(now + backoff(2)));
        watch.observe(&store, 1, &DeliveryResult::Sent, now).await;
        assert_eq!(watch.held_until(1, now), None);
        assert!(store.smtp_auth_failures().unwrap().is_empty());
    }
}
