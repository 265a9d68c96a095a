//! Sender: the outbox worker. Claims due rows from the store, sends each
//! over SMTP (lettre, rustls), records sent / retry later / failed. Wakes
//! at once when ingest queues mail, otherwise every second. It must not
//! compose mail or decide who gets what: that happened before the row was
//! written.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use lettre::address::Envelope;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::outbound::journal::SentJournal;
use crate::outbound::mailer::Mailer;
use crate::outbound::routes::SmtpRoutes;
use crate::store::{DeliveryResult, OutboxItem, Store};

/// Runs until `shutdown`; the mail in hand is finished first.
pub async fn run(
    store: Arc<Store>,
    routes: SmtpRoutes,
    journal: SentJournal,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // One mailer per SMTP account (`routes`); the first queue's settings
    // bound the retries and timeouts.
    let mailers = routes
        .routes()
        .iter()
        .map(|r| Mailer::new(&r.smtp, r.oauth.clone()))
        .collect::<anyhow::Result<Vec<Mailer>>>()?;
    let (Some(settings), Some(mailer)) = (routes.first().map(|r| r.smtp.clone()), mailers.first())
    else {
        anyhow::bail!("no SMTP account is configured");
    };
    let delivered = journal.read().context("cannot read the sent journal")?;
    let recovered = blocking(&store, move |s| s.recover_sent(&delivered, Utc::now())).await?;
    if recovered > 0 {
        tracing::info!("{recovered} mails sent just before the last stop are recorded as sent.");
    }
    journal.clear().context("cannot clear the sent journal")?;
    let requeued = blocking(&store, |s| s.requeue_interrupted()).await?;
    if requeued > 0 {
        tracing::info!("{requeued} mails interrupted by the last shutdown are queued again.");
    }
    let mut auth = AuthWatch::load(&store).await;
    auth.probe(&store, mailer, settings.timeout_seconds).await;
    // Whether the journal holds entries the database has since recorded:
    // only then is it worth emptying (a truncate and an fsync).
    let mut journal_dirty = false;
    while !shutdown.is_cancelled() {
        let due = blocking(&store, |s| s.claim_outbox(Utc::now(), 20)).await;
        let due = match due {
            Ok(due) => due,
            Err(err) => {
                tracing::error!("Cannot read the outbox: {err:#}");
                Vec::new()
            }
        };
        if due.is_empty() {
            // Everything accepted so far is recorded in the database.
            if journal_dirty {
                let journal = journal.clone();
                match tokio::task::spawn_blocking(move || journal.clear()).await {
                    Ok(Ok(())) => journal_dirty = false,
                    Ok(Err(err)) => tracing::warn!("Cannot clear the sent journal: {err}"),
                    Err(err) => tracing::warn!("The journal task panicked: {err}"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        for (index, item) in due.iter().enumerate() {
            if shutdown.is_cancelled() {
                // Not attempted: back to pending for the next run.
                let rest: Vec<i64> = due[index..].iter().map(|i| i.id).collect();
                blocking(&store, move |s| s.release_claims(&rest)).await?;
                break;
            }
            let mailer = &mailers[routes.pick(&item.envelope_from)];
            let result = deliver(mailer, item, settings.timeout_seconds).await;
            if matches!(result, DeliveryResult::Sent) {
                let (journal, id) = (journal.clone(), item.message_id.clone());
                tokio::task::spawn_blocking(move || journal.record(&id))
                    .await
                    .context("the journal task panicked")?
                    .context("cannot write the sent journal")?;
                journal_dirty = true;
            }
            log_result(item, &result);
            auth.observe(&store, &result).await;
            let refused = matches!(result, DeliveryResult::AuthFailed(_));
            let (id, max) = (item.id, settings.max_attempts);
            blocking(&store, move |s| {
                s.record_delivery(id, &result, max, Utc::now())
            })
            .await?;
            if refused {
                // Every mail would meet the same refusal: wait, then retry.
                let rest: Vec<i64> = due[index + 1..].iter().map(|i| i.id).collect();
                blocking(&store, move |s| s.release_claims(&rest)).await?;
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(auth.backoff()) => {}
                }
                break;
            }
        }
    }
    Ok(())
}

async fn deliver(mailer: &Mailer, item: &OutboxItem, timeout_seconds: u64) -> DeliveryResult {
    let envelope = match envelope(item) {
        Ok(e) => e,
        Err(err) => return DeliveryResult::Permanent(format!("bad envelope: {err}")),
    };
    let limit = Duration::from_secs(timeout_seconds.saturating_mul(2));
    match tokio::time::timeout(limit, mailer.send_raw(&envelope, &item.raw)).await {
        Ok(Ok(_)) => DeliveryResult::Sent,
        Ok(Err(err)) => classify_failure(err.status().map(u16::from), &err.to_string()),
        Err(_) => DeliveryResult::Temporary("the SMTP exchange timed out".to_string()),
    }
}

fn envelope(item: &OutboxItem) -> anyhow::Result<Envelope> {
    let to = item
        .recipients
        .iter()
        .map(|r| r.parse())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Envelope::new(Some(item.envelope_from.parse()?), to)?)
}

fn log_result(item: &OutboxItem, result: &DeliveryResult) {
    let to = item.recipients.join(", ");
    match result {
        DeliveryResult::Sent => tracing::info!("Sent <{}> to {to}.", item.message_id),
        DeliveryResult::Temporary(e) => {
            tracing::warn!("Could not send <{}> to {to} yet: {e}", item.message_id)
        }
        DeliveryResult::Permanent(e) => {
            tracing::error!("Gave up sending <{}> to {to}: {e}", item.message_id)
        }
        DeliveryResult::AuthFailed(e) => tracing::error!(
            "The SMTP server refuses our login; <{}> waits until it accepts it: {e}",
            item.message_id
        ),
    }
}

/// How a failed SMTP exchange counts, from the server's reply code (none
/// for a network, TLS or client error) and the error's words. A refused
/// login (535 bad credentials, 534 mechanism too weak, 530 authentication
/// or TLS required, 538, 454 with "auth": a temporary authentication
/// failure) is a fault of our settings, not of the mail; other 5xx replies
/// are permanent; 4xx and errors without a reply are worth another try.
/// Pure.
pub fn classify_failure(code: Option<u16>, text: &str) -> DeliveryResult {
    let text_says_auth = text.to_ascii_lowercase().contains("auth");
    match code {
        Some(530 | 534 | 535 | 538) => DeliveryResult::AuthFailed(text.to_string()),
        Some(454) if text_says_auth => DeliveryResult::AuthFailed(text.to_string()),
        Some(500..=599) => DeliveryResult::Permanent(text.to_string()),
        // lettre's own words when the server offers no mechanism we have.
        None if text.contains("authentication mechanism") => {
            DeliveryResult::AuthFailed(text.to_string())
        }
        _ => DeliveryResult::Temporary(text.to_string()),
    }
}

/// Whether the SMTP server refuses our login, as recorded in the store
/// (for `/healthz`, `/metrics`, `outbox list`); written only on a change.
struct AuthWatch {
    failing: bool,
    /// Refusals in a row: the wait before the next try doubles with each.
    refusals: u32,
}

impl AuthWatch {
    async fn load(store: &Arc<Store>) -> AuthWatch {
        let failing = blocking(store, |s| s.smtp_auth_failure())
            .await
            .map(|f| f.is_some())
            .unwrap_or(false);
        AuthWatch {
            failing,
            refusals: 0,
        }
    }

    /// A refusal recorded by an earlier run may be fixed by new settings:
    /// log in once to know, even with no mail waiting.
    async fn probe(&mut self, store: &Arc<Store>, mailer: &Mailer, timeout_seconds: u64) {
        if !self.failing {
            return;
        }
        let limit = Duration::from_secs(timeout_seconds.saturating_mul(2));
        let result = match tokio::time::timeout(limit, mailer.test_connection()).await {
            Ok(Ok(true)) => DeliveryResult::Sent,
            Ok(Ok(false)) => return,
            Ok(Err(err)) => classify_failure(err.status().map(u16::from), &err.to_string()),
            Err(_) => return,
        };
        if matches!(result, DeliveryResult::Sent) {
            tracing::info!("The SMTP server accepts our login again.");
        }
        self.observe(store, &result).await;
    }

    /// Records what an attempt says about our login: refused, or past it
    /// (sent, or a reply to the mail itself); a network error says nothing.
    async fn observe(&mut self, store: &Arc<Store>, result: &DeliveryResult) {
        let written = match result {
            DeliveryResult::AuthFailed(error) => {
                self.refusals = self.refusals.saturating_add(1);
                let error = error.clone();
                let first = !self.failing;
                self.failing = true;
                if !first && self.refusals % 16 != 1 {
                    return;
                }
                blocking(store, move |s| s.set_smtp_auth_failure(&error, Utc::now())).await
            }
            DeliveryResult::Sent | DeliveryResult::Permanent(_) => {
                self.refusals = 0;
                if !std::mem::replace(&mut self.failing, false) {
                    return;
                }
                blocking(store, |s| s.clear_smtp_auth_failure()).await
            }
            DeliveryResult::Temporary(_) => return,
        };
        if let Err(err) = written {
            tracing::warn!("Cannot record the SMTP login state: {err:#}");
        }
    }

    /// 5 s after the first refusal, doubling, at most 5 minutes.
    fn backoff(&self) -> Duration {
        let exponent = self.refusals.saturating_sub(1).min(6);
        Duration::from_secs((5u64 << exponent).min(300))
    }
}

async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .context("a store task panicked")?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(result: &DeliveryResult) -> &'static str {
        match result {
            DeliveryResult::Sent => "sent",
            DeliveryResult::Temporary(_) => "temporary",
            DeliveryResult::Permanent(_) => "permanent",
            DeliveryResult::AuthFailed(_) => "auth",
        }
    }

    #[test]
    fn reply_codes_tell_our_login_from_the_mail() {
        let cases = [
            (
                Some(535),
                "permanent error (535): 5.7.8 Error: authentication failed",
                "auth",
            ),
            (
                Some(534),
                "permanent error (534): 5.7.9 Please log in with your web browser",
                "auth",
            ),
            (
                Some(530),
                "permanent error (530): 5.7.0 Authentication required",
                "auth",
            ),
            (
                Some(538),
                "permanent error (538): 5.7.11 Encryption required",
                "auth",
            ),
            (
                Some(454),
                "transient error (454): 4.7.0 Temporary authentication failure",
                "auth",
            ),
            (
                None,
                "internal client error: No compatible authentication mechanism was found",
                "auth",
            ),
            // Postfix deferring a relay is 4.7.1 too, but not about our login.
            (
                Some(454),
                "transient error (454): 4.7.1 <x@outside.test>: Relay access denied",
                "temporary",
            ),
            (
                Some(554),
                "permanent error (554): 5.7.1 <x@outside.test>: Relay access denied",
                "permanent",
            ),
            (
                Some(550),
                "permanent error (550): 5.1.1 <nobody@example.test>: User unknown",
                "permanent",
            ),
            (
                Some(552),
                "permanent error (552): 5.3.4 Message size exceeds fixed limit",
                "permanent",
            ),
            (
                Some(421),
                "transient error (421): 4.3.2 Service shutting down",
                "temporary",
            ),
            (
                Some(451),
                "transient error (451): 4.3.0 Error: queue file write error",
                "temporary",
            ),
            (
                None,
                "network error: Connection refused (os error 111)",
                "temporary",
            ),
            (None, "tls error: invalid peer certificate", "temporary"),
        ];
        for (code, text, expected) in cases {
            let result = classify_failure(code, text);
            assert_eq!(kind(&result), expected, "{code:?} {text}");
            match result {
                DeliveryResult::Temporary(t)
                | DeliveryResult::Permanent(t)
                | DeliveryResult::AuthFailed(t) => assert_eq!(t, text, "the words are kept"),
                DeliveryResult::Sent => unreachable!(),
            }
        }
    }

    #[test]
    fn refused_logins_back_off_with_a_cap() {
        let mut watch = AuthWatch {
            failing: true,
            refusals: 1,
        };
        assert_eq!(watch.backoff(), Duration::from_secs(5));
        watch.refusals = 2;
        assert_eq!(watch.backoff(), Duration::from_secs(10));
        watch.refusals = 40;
        assert_eq!(watch.backoff(), Duration::from_secs(300));
    }
}
