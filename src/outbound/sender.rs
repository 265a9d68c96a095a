//! Sender: the outbox worker. Claims due rows from the store, sends each
//! over SMTP (lettre, rustls), records sent / retry later / failed. Wakes
//! at once when ingest queues mail, otherwise every second. Each row goes
//! out through its queue's route (`routes`); a route whose login the
//! server refuses has its mail held, unattempted, until its next try
//! (`auth_watch`), and every other route keeps sending. After the
//! database failed a claim or a batch, it settles what it may have
//! claimed or sent unseen (as at a start) before it claims or sends
//! anything again, and keeps the sent journal until then. It must not
//! compose mail or decide who gets what: that happened before the row was
//! written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use lettre::address::Envelope;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::outbound::auth_watch::AuthWatch;
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
    let mut worker = Worker::new(store, routes, journal)?;
    worker.recover().await?;
    worker
        .watch
        .start(&worker.store, &worker.mailers, worker.timeout_seconds)
        .await;
    // Whether the database may hold what this worker does not know: rows
    // it claimed without seeing the claim's answer, or sent mail not yet
    // recorded (only the journal knows it). Settled as at a start before
    // anything is claimed again, and the journal is never emptied before.
    let mut unsettled = false;
    // The last batch's results, recorded in the transaction of the next
    // claim (see `Store::record_and_claim`).
    let mut unrecorded: Vec<(i64, DeliveryResult)> = Vec::new();
    while !shutdown.is_cancelled() {
        if unsettled {
            if let Err(err) = worker.recover().await {
                tracing::warn!("The outbox waits for the database: {err:#}");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                continue;
            }
            unsettled = false;
        }
        let results = std::mem::take(&mut unrecorded);
        let max = worker.max_attempts;
        let due = blocking(&worker.store, move |s| {
            s.record_and_claim(&results, max, Utc::now(), 20)
        })
        .await;
        let due = match due {
            Ok(due) => due,
            Err(err) => {
                // A COMMIT cut off by a PostgreSQL shutdown may have taken
                // effect: rows marked `sending` for this daemon, which it
                // never got and nobody else would ever send. The last
                // batch's results are in the journal or sent again.
                tracing::error!("Cannot read the outbox: {err:#}");
                unsettled = true;
                Vec::new()
            }
        };
        if due.is_empty() {
            if !unsettled {
                worker.clear_journal().await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        match worker.send_batch(&due, &shutdown).await {
            Ok(results) => unrecorded = results,
            Err(err) => {
                // The database went away mid-batch (a PostgreSQL restart): what
                // was sent is in the journal; settle it once the database is back.
                tracing::error!("The outbox could not record a batch: {err:#}");
                unsettled = true;
            }
        }
    }
    if !unrecorded.is_empty() {
        let max = worker.max_attempts;
        let recorded = blocking(&worker.store, move |s| {
            s.record_deliveries(&unrecorded, max, Utc::now())
        })
        .await;
        if let Err(err) = recorded {
            tracing::error!("The outbox could not record its last batch: {err:#}");
            unsettled = true;
        }
    }
    if unsettled {
        // One try, bounded by the stop's own deadline; else the next start
        // settles it (the journal is kept).
        let settled = tokio::time::timeout(Duration::from_secs(2), worker.recover()).await;
        if !matches!(settled, Ok(Ok(()))) {
            tracing::warn!("The outbox is settled at the next start.");
        }
    }
    Ok(())
}

/// The outbox worker's state between batches.
struct Worker {
    store: Arc<Store>,
    routes: SmtpRoutes,
    /// One mailer per route, in the order of `routes`.
    mailers: Vec<Mailer>,
    journal: SentJournal,
    watch: AuthWatch,
    /// The first queue's settings bound the retries and timeouts.
    timeout_seconds: u64,
    max_attempts: u32,
    /// Whether the journal holds entries the database has since recorded:
    /// only then is it worth emptying (a truncate and an fsync).
    journal_dirty: bool,
}

impl Worker {
    fn new(store: Arc<Store>, routes: SmtpRoutes, journal: SentJournal) -> anyhow::Result<Worker> {
        let mailers = routes
            .routes()
            .iter()
            .map(|r| Mailer::new(&r.smtp, r.oauth.clone()))
            .collect::<anyhow::Result<Vec<Mailer>>>()?;
        let Some(first) = routes.first().map(|r| r.smtp.clone()) else {
            anyhow::bail!("no SMTP account is configured");
        };
        Ok(Worker {
            store,
            watch: AuthWatch::new(&routes),
            routes,
            mailers,
            journal,
            timeout_seconds: first.timeout_seconds,
            max_attempts: first.max_attempts,
            journal_dirty: false,
        })
    }

    /// Settles what the last run left: mail the journal says was sent is
    /// recorded so, mail interrupted mid-send is queued again.
    async fn recover(&mut self) -> anyhow::Result<()> {
        let delivered = self
            .journal
            .read()
            .context("cannot read the sent journal")?;
        let recovered =
            blocking(&self.store, move |s| s.recover_sent(&delivered, Utc::now())).await?;
        if recovered > 0 {
            tracing::info!(
                "{recovered} mails sent just before the last stop are recorded as sent."
            );
        }
        self.journal
            .clear()
            .context("cannot clear the sent journal")?;
        self.journal_dirty = false;
        let requeued = blocking(&self.store, |s| s.requeue_interrupted()).await?;
        if requeued > 0 {
            tracing::info!(
                "{requeued} mails left mid-send (at the last stop, or when the database failed) are queued again."
            );
        }
        Ok(())
    }

    /// Everything accepted so far is recorded in the database: empties
    /// the journal if it holds anything.
    async fn clear_journal(&mut self) {
        if !self.journal_dirty {
            return;
        }
        let journal = self.journal.clone();
        match tokio::task::spawn_blocking(move || journal.clear()).await {
            Ok(Ok(())) => self.journal_dirty = false,
            Ok(Err(err)) => tracing::warn!("Cannot clear the sent journal: {err}"),
            Err(err) => tracing::warn!("The journal task panicked: {err}"),
        }
    }

    /// Sends each claimed row, except those of a route whose login the
    /// server refuses: they are held, unattempted, until that route's next
    /// try, so other routes' mail never waits behind them. Returns the
    /// results left for the next claim to record; with mail held or left
    /// unattempted they are recorded here first, since those rows change
    /// again after.
    async fn send_batch(
        &mut self,
        due: &[OutboxItem],
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Vec<(i64, DeliveryResult)>> {
        let mut held: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
        let mut results = Vec::with_capacity(due.len());
        let mut unattempted = Vec::new();
        for (index, item) in due.iter().enumerate() {
            if shutdown.is_cancelled() {
                unattempted = due[index..].iter().map(|i| i.id).collect();
                break;
            }
            let route = self.routes.pick(&item.envelope_from);
            if self.watch.held_until(route, Utc::now()).is_none() {
                let result = deliver(&self.mailers[route], item, self.timeout_seconds).await;
                self.finish(item, route, &result).await?;
                results.push((item.id, result));
            }
            // Refused just now or before: wait for the route's next try.
            if self.watch.held_until(route, Utc::now()).is_some() {
                held.entry(route).or_default().push(item.id);
            }
        }
        if unattempted.is_empty() && held.is_empty() {
            return Ok(results);
        }
        // The rows in one transaction (see `Store::record_deliveries`).
        let max = self.max_attempts;
        blocking(&self.store, move |s| {
            s.record_deliveries(&results, max, Utc::now())
        })
        .await?;
        if !unattempted.is_empty() {
            // Not attempted: back to pending for the next run.
            blocking(&self.store, move |s| s.release_claims(&unattempted)).await?;
        }
        for (route, ids) in held {
            let now = Utc::now();
            let until = self.watch.held_until(route, now).unwrap_or(now);
            let name = self.routes.routes()[route].name().to_string();
            tracing::debug!(
                "{} mails of route {name} wait for its SMTP login until {until}.",
                ids.len()
            );
            blocking(&self.store, move |s| s.hold_outbox(&ids, &name, until)).await?;
        }
        Ok(Vec::new())
    }

    /// Records one attempt: in the journal when sent, in the log and in
    /// the route's login state (the row is the batch's, `send_batch`).
    async fn finish(
        &mut self,
        item: &OutboxItem,
        route: usize,
        result: &DeliveryResult,
    ) -> anyhow::Result<()> {
        if matches!(result, DeliveryResult::Sent) {
            let (journal, id) = (self.journal.clone(), item.message_id.clone());
            tokio::task::spawn_blocking(move || journal.record(&id))
                .await
                .context("the journal task panicked")?
                .context("cannot write the sent journal")?;
            self.journal_dirty = true;
        }
        log_result(item, self.routes.routes()[route].name(), result);
        self.watch
            .observe(&self.store, route, result, Utc::now())
            .await;
        Ok(())
    }
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

fn log_result(item: &OutboxItem, route: &str, result: &DeliveryResult) {
    let to = item.recipients.join(", ");
    match result {
        DeliveryResult::Sent => tracing::info!("Sent <{}> to {to}.", item.message_id),
        DeliveryResult::Temporary(e) => {
            tracing::warn!("Could not send <{}> to {to} yet: {e}", item.message_id)
        }
        DeliveryResult::Permanent(e) => {
            tracing::error!("Gave up sending <{}> to {to}: {e}", item.message_id)
        }
        DeliveryResult::AuthFailed(e) => tracing::warn!(
            "The SMTP server refuses the login of route {route}; <{}> waits until it \
             accepts it: {e}",
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

/// Runs `f` on the store off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
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
}
