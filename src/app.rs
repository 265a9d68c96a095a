//! App: builds the daemon from its settings and owns its tasks (the IMAP
//! watcher, the outbox sender, the web server). Shutdown is passed in as a
//! CancellationToken; every task ends on it, and `run` waits for them under
//! a deadline. It must not hold business logic: it wires parts together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::imap::{Checkpoint, FetchedMail, ImapStatus, MailSink};
use crate::ingest::Pipeline;
use crate::settings::Settings;
use crate::store::{IngestReport, Store};

/// How long shutdown waits for the tasks to finish the work in hand.
const DRAIN_DEADLINE: Duration = Duration::from_secs(4);

/// A built daemon, not yet running.
pub struct App {
    settings: Settings,
    store: Arc<Store>,
    pipeline: Arc<Pipeline>,
    web: crate::web::Servers,
    outbox_wake: Arc<Notify>,
    imap_status: Arc<ImapStatus>,
}

/// Opens the store and the pipeline: what both the daemon and the
/// one-shot commands need.
pub fn open_store(settings: &Settings) -> anyhow::Result<(Arc<Store>, Arc<Pipeline>)> {
    let store = Store::open(&settings.database.path)?;
    let secret = if settings.support.secret.is_empty() {
        store.installation_secret()?
    } else {
        settings.support.secret.expose().to_string()
    };
    let pipeline = Pipeline::new(settings, &secret);
    Ok((Arc::new(store), Arc::new(pipeline)))
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let (store, pipeline) = open_store(&settings)?;
        let web = crate::web::Servers::bind(&settings.web).await?;
        Ok(App {
            settings,
            store,
            pipeline,
            web,
            outbox_wake: Arc::new(Notify::new()),
            imap_status: Arc::new(ImapStatus::default()),
        })
    }

    /// The address the status page listens on (useful with port 0).
    pub fn web_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.web.addr()?)
    }

    /// The address of `/metrics` and `/healthz` when `web.admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.web.admin_addr()
    }

    pub fn store(&self) -> Arc<Store> {
        Arc::clone(&self.store)
    }

    /// Runs until `shutdown` is cancelled, then drains.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        let sink = Arc::new(StoreSink {
            store: Arc::clone(&self.store),
            pipeline: Arc::clone(&self.pipeline),
            outbox_wake: Arc::clone(&self.outbox_wake),
        });
        tracing::info!(
            "postdesk is running: mailbox {} on {}:{}, status page on http://{}",
            self.settings.imap.mailbox,
            self.settings.imap.host,
            self.settings.imap.port,
            self.web_addr()?
        );
        tracker.spawn(crate::imap::run(
            self.settings.imap.clone(),
            crate::imap::FetchLimits::new(self.settings.limits.max_message_bytes),
            sink,
            Arc::clone(&self.imap_status),
            shutdown.clone(),
        ));
        let sender = crate::outbound::sender::run(
            Arc::clone(&self.store),
            self.settings.smtp.clone(),
            crate::outbound::journal::SentJournal::beside(&self.settings.database.path),
            Arc::clone(&self.outbox_wake),
            shutdown.clone(),
        );
        let sender_shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(err) = sender.await {
                tracing::error!("The outbox sender stopped: {err:#}");
                sender_shutdown.cancel();
            }
        });
        let store = Arc::clone(&self.store);
        let imap_status = Arc::clone(&self.imap_status);
        let web_settings = self.settings.clone();
        let web_shutdown = shutdown.clone();
        tracker.spawn(async move {
            self.web
                .serve(store, &web_settings, imap_status, web_shutdown)
                .await;
        });
        tracker.spawn(autoclose(
            Arc::clone(&self.store),
            Arc::clone(&self.pipeline),
            self.settings.support.autoclose_days,
            Arc::clone(&self.outbox_wake),
            shutdown.clone(),
        ));
        tracker.close();
        shutdown.cancelled().await;
        tracing::info!("Shutting down: finishing the work in hand.");
        if tokio::time::timeout(DRAIN_DEADLINE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("Some tasks did not finish within {DRAIN_DEADLINE:?}; stopping anyway.");
        }
        tracing::info!("postdesk stopped.");
        Ok(())
    }
}

/// How often resolved tickets are checked for closing by themselves.
const AUTOCLOSE_EVERY: Duration = Duration::from_secs(5);

/// Closes resolved tickets after `autoclose_days` without a customer reply.
async fn autoclose(
    store: Arc<Store>,
    pipeline: Arc<Pipeline>,
    days: f64,
    outbox_wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(AUTOCLOSE_EVERY) => {}
        }
        let (store, pipeline) = (Arc::clone(&store), Arc::clone(&pipeline));
        let closed =
            tokio::task::spawn_blocking(move || store.autoclose(&pipeline, days, Utc::now())).await;
        match closed {
            Ok(Ok(closed)) if !closed.is_empty() => {
                for number in &closed {
                    tracing::info!(
                        "Ticket #{number} was resolved for {days} days and is now closed."
                    );
                }
                outbox_wake.notify_one();
            }
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::error!("Closing resolved tickets failed: {err:#}"),
            Err(err) => tracing::error!("The autoclose task panicked: {err}"),
        }
    }
}

/// The IMAP watcher's sink: the store, then a nudge to the sender.
struct StoreSink {
    store: Arc<Store>,
    pipeline: Arc<Pipeline>,
    outbox_wake: Arc<Notify>,
}

impl MailSink for StoreSink {
    async fn checkpoint(&self, mailbox: &str) -> anyhow::Result<Option<Checkpoint>> {
        let store = Arc::clone(&self.store);
        let mailbox = mailbox.to_string();
        tokio::task::spawn_blocking(move || store.checkpoint(&mailbox)).await?
    }

    async fn ingest_batch(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        mails: Vec<FetchedMail>,
        checkpoint: Option<u32>,
    ) -> anyhow::Result<()> {
        let store = Arc::clone(&self.store);
        let pipeline = Arc::clone(&self.pipeline);
        let mailbox = mailbox.to_string();
        let reports = tokio::task::spawn_blocking(move || {
            let at = (&mailbox[..], uidvalidity, checkpoint);
            store.ingest_batch_at(&pipeline, at, mails, Utc::now())
        })
        .await??;
        let mut queued = 0;
        for report in &reports {
            queued += log_report(report);
        }
        if queued > 0 {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }
}

/// Logs one ingest result as a sentence; returns how many mails it queued.
pub fn log_report(report: &IngestReport) -> usize {
    match report {
        IngestReport::NewTicket { number, queued } => {
            tracing::info!("A new mail opened ticket #{number}.");
            *queued
        }
        IngestReport::FollowUp { number, queued } => {
            tracing::info!("A mail was added to ticket #{number}.");
            *queued
        }
        IngestReport::Duplicate => {
            tracing::info!("A mail was already stored; nothing changed.");
            0
        }
        IngestReport::Quarantined { reason } => {
            tracing::warn!("A mail went to the quarantine: {reason}");
            0
        }
        IngestReport::Ignored { reason } => {
            tracing::info!("A mail was ignored: {reason}");
            0
        }
    }
}
