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
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::outbound::journal::SentJournal;
use crate::settings::{SmtpSettings, TlsMode};
use crate::store::{DeliveryResult, OutboxItem, Store};

type Mailer = AsyncSmtpTransport<Tokio1Executor>;

/// Builds the SMTP transport from the settings.
pub fn mailer(settings: &SmtpSettings) -> anyhow::Result<Mailer> {
    let tls_parameters = || -> anyhow::Result<TlsParameters> {
        let mut builder = TlsParameters::builder(settings.host.clone());
        if !settings.ca_file.is_empty() {
            let pem = std::fs::read(&settings.ca_file)
                .with_context(|| format!("cannot read smtp.ca_file {}", settings.ca_file))?;
            builder = builder.add_root_certificate(Certificate::from_pem(&pem)?);
        }
        Ok(builder.build_rustls()?)
    };
    let tls = match settings.tls {
        TlsMode::Tls => Tls::Wrapper(tls_parameters()?),
        TlsMode::Starttls => Tls::Required(tls_parameters()?),
        TlsMode::None => Tls::None,
    };
    let mut builder = Mailer::builder_dangerous(settings.host.clone())
        .port(settings.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(settings.timeout_seconds)));
    if !settings.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            settings.username.clone(),
            settings.password.expose().to_string(),
        ));
    }
    Ok(builder.build())
}

/// Runs until `shutdown`; the mail in hand is finished first.
pub async fn run(
    store: Arc<Store>,
    settings: SmtpSettings,
    journal: SentJournal,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mailer = mailer(&settings)?;
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
            let result = deliver(&mailer, item, settings.timeout_seconds).await;
            if matches!(result, DeliveryResult::Sent) {
                let (journal, id) = (journal.clone(), item.message_id.clone());
                tokio::task::spawn_blocking(move || journal.record(&id))
                    .await
                    .context("the journal task panicked")?
                    .context("cannot write the sent journal")?;
                journal_dirty = true;
            }
            log_result(item, &result);
            let (id, max) = (item.id, settings.max_attempts);
            blocking(&store, move |s| {
                s.record_delivery(id, &result, max, Utc::now())
            })
            .await?;
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
        Ok(Err(err)) if err.is_permanent() => DeliveryResult::Permanent(err.to_string()),
        Ok(Err(err)) => DeliveryResult::Temporary(err.to_string()),
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
