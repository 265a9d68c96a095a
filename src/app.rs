//! App: builds the daemon from its settings and owns its tasks (one IMAP
//! watcher per queue's mailbox unless its `imap.enabled = false`, each with
//! its own checkpoint, backoff and status, the LMTP server when
//! `lmtp.listen` is set, the outbox sender, the web server). Shutdown is passed in as a
//! CancellationToken; every task ends on it, and `run` waits for them under
//! a deadline. It must not hold business logic: it wires parts together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::imap::{Checkpoint, FetchedMail, ImapBoard, ImapStatus, MailSink};
use crate::ingest::Pipeline;
use crate::intake::Verdict;
use crate::oauth::TokenSource;
use crate::settings::{Queue, Settings};
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
    /// One status per watched mailbox, by queue.
    imap: Arc<ImapBoard>,
    /// Each queue's OAuth2 token source (`None` where it logs in with a
    /// password), in the order of `settings.queues()`.
    tokens: Vec<Option<Arc<TokenSource>>>,
    /// Bound in `build` when `lmtp.listen` is set.
    lmtp: Option<crate::lmtp::Listener>,
    /// PostgreSQL: this daemon's claim on the files beside `database.path`.
    _files_lock: Option<std::fs::File>,
}

/// Opens the store and the pipeline: what both the daemon and the
/// one-shot commands need.
pub fn open_store(settings: &Settings) -> anyhow::Result<(Arc<Store>, Arc<Pipeline>)> {
    let store = Store::connect(&settings.database)?;
    let secret = if settings.support.secret.is_empty() {
        store.installation_secret()?
    } else {
        settings.support.secret.expose().to_string()
    };
    let adopted = store.adopt_unqueued_tickets(&settings.support.queue)?;
    if adopted > 0 {
        tracing::info!(
            "{adopted} tickets from before queues now belong to the first queue, `{}`.",
            settings.support.queue
        );
    }
    let templates = crate::outbound::templates::Templates::load(settings)?;
    let pipeline = Pipeline::with_templates(settings, &secret, Arc::new(templates));
    Ok((Arc::new(store), Arc::new(pipeline)))
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let (store, pipeline) = open_store(&settings)?;
        let files_lock = match store.backend() {
            crate::store::Backend::Postgres => {
                Some(crate::store::hold_daemon_files(&settings.database.path)?)
            }
            crate::store::Backend::Sqlite => None,
        };
        let web = crate::web::Servers::bind(&settings.web).await?;
        let lmtp = match settings.lmtp.listen.as_str() {
            "" => None,
            listen => Some(crate::lmtp::Listener::bind(listen).await?),
        };
        let tokens = token_sources(&settings)?;
        let imap = imap_board(&settings, &tokens);
        Ok(App {
            settings,
            store,
            pipeline,
            web,
            outbox_wake: Arc::new(Notify::new()),
            imap: Arc::new(imap),
            tokens,
            lmtp,
            _files_lock: files_lock,
        })
    }

    /// The LMTP server's TCP address, when it listens on TCP (useful with port 0).
    pub fn lmtp_addr(&self) -> Option<SocketAddr> {
        self.lmtp
            .as_ref()
            .and_then(crate::lmtp::Listener::local_addr)
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
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let tracker = TaskTracker::new();
        tracing::info!(
            "postdesk is running: {}, status page on http://{}",
            self.intake_summary(),
            self.web_addr()?
        );
        let board = crate::lease::LeaseBoard::new(self.imap.mailboxes().len());
        // Every mailbox's batches are written on this run's one thread.
        let ingest = Arc::new(crate::intake::IngestThread::default());
        for queue in self.settings.queues() {
            // A queue without IMAP (LMTP or the pipe only) has no status.
            let Some(status) = self.imap.of(&queue.name).cloned() else {
                continue;
            };
            let sink = Arc::new(StoreSink {
                store: Arc::clone(&self.store),
                pipeline: Arc::clone(&self.pipeline),
                outbox_wake: Arc::clone(&self.outbox_wake),
                ingest: Arc::clone(&ingest),
                account: queue.imap.username.clone(),
                checkpoint_key: queue.checkpoint_key(),
            });
            let (imap, limits) = (
                queue.imap.clone(),
                crate::imap::FetchLimits::new(self.settings.limits.max_message_bytes),
            );
            let watched = Arc::clone(&status);
            // Read only while this daemon holds the mailbox's lease.
            tracker.spawn(crate::lease::run_leased(
                Arc::clone(&self.store),
                Arc::clone(&board),
                queue.checkpoint_key(),
                status,
                shutdown.clone(),
                move |stop| {
                    crate::imap::run(
                        imap.clone(),
                        limits,
                        Arc::clone(&sink),
                        Arc::clone(&watched),
                        stop,
                    )
                },
            ));
        }
        tracker.spawn(crate::lease::heartbeat(
            Arc::clone(&self.store),
            Arc::clone(&self.outbox_wake),
            shutdown.clone(),
        ));
        if let Some(listener) = self.lmtp.take() {
            let ctx = crate::lmtp::Context {
                store: Arc::clone(&self.store),
                pipeline: Arc::clone(&self.pipeline),
                settings: Arc::new(self.settings.clone()),
                outbox_wake: Arc::clone(&self.outbox_wake),
                host: lmtp_host(&self.settings.support.address),
            };
            tracker.spawn(crate::lmtp::run(listener, Arc::new(ctx), shutdown.clone()));
        }
        let sender = crate::outbound::sender::run(
            Arc::clone(&self.store),
            crate::outbound::routes::SmtpRoutes::new(
                self.settings
                    .queues()
                    .into_iter()
                    .zip(self.tokens.clone())
                    .collect(),
            ),
            crate::outbound::journal::SentJournal::beside(&self.settings.database.path),
            Arc::clone(&self.outbox_wake),
            shutdown.clone(),
        );
        let sender_shutdown = shutdown.clone();
        let sender_failed = Arc::new(std::sync::Mutex::new(None));
        let failure = Arc::clone(&sender_failed);
        tracker.spawn(async move {
            if let Err(err) = sender.await {
                tracing::error!("The outbox sender stopped: {err:#}");
                *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
                sender_shutdown.cancel();
            }
        });
        let store = Arc::clone(&self.store);
        let imap_status = Arc::clone(&self.imap);
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
        crate::lease::stopped(Arc::clone(&self.store)).await;
        tracing::info!("postdesk stopped.");
        // A daemon that stopped because its sender failed exits non-zero,
        // so a supervisor (systemd's Restart=on-failure) starts it again.
        let failed = sender_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match failed {
            Some(err) => Err(err.context("the outbox sender stopped")),
            None => Ok(()),
        }
    }
}

impl App {
    /// Where mail comes from, for the start-up line.
    fn intake_summary(&self) -> String {
        let mut parts = Vec::new();
        for queue in self.settings.queues() {
            let imap = &queue.imap;
            if imap.enabled {
                parts.push(format!(
                    "queue {} from mailbox {} of {} on {}:{}",
                    queue.name, imap.mailbox, imap.username, imap.host, imap.port
                ));
            }
        }
        if parts.is_empty() {
            parts.push("IMAP off".to_string());
        }
        if let Some(lmtp) = &self.lmtp {
            parts.push(format!("LMTP on {}", lmtp.describe()));
        }
        parts.join(", ")
    }
}

/// Each queue's token source, where its IMAP or SMTP logs in with XOAUTH2.
/// Queues with the same `[oauth]` settings (the same refresh token) share
/// one source, so that only one of them refreshes and rotates the token.
fn token_sources(settings: &Settings) -> anyhow::Result<Vec<Option<Arc<TokenSource>>>> {
    let mut made: Vec<(String, Arc<TokenSource>)> = Vec::new();
    let mut out = Vec::new();
    for q in settings.queues() {
        let key = format!(
            "{}\0{}\0{}\0{}\0{}",
            q.oauth.provider,
            q.oauth.tenant,
            q.oauth.client_id,
            q.oauth.token_url,
            q.oauth.refresh_token_file
        );
        if let Some((_, shared)) = made.iter().find(|(k, _)| *k == key) {
            let used = [q.imap.auth, q.smtp.auth].contains(&crate::settings::AuthMethod::Xoauth2);
            out.push(used.then(|| Arc::clone(shared)));
            continue;
        }
        let source = TokenSource::for_logins(&q.imap, &q.smtp, &q.oauth, &q.name)?;
        if let Some(source) = &source {
            made.push((key, Arc::clone(source)));
        }
        out.push(source);
    }
    Ok(out)
}

/// One IMAP status per queue whose mailbox is read over IMAP, with that
/// queue's token source.
fn imap_board(settings: &Settings, tokens: &[Option<Arc<TokenSource>>]) -> ImapBoard {
    let watched = settings
        .queues()
        .into_iter()
        .zip(tokens.iter().cloned())
        .filter(|(q, _)| q.imap.enabled);
    ImapBoard::new(
        watched
            .map(|(q, oauth): (Queue, _)| {
                let status = ImapStatus {
                    oauth,
                    ..ImapStatus::default()
                };
                (q.name, Arc::new(status))
            })
            .collect(),
    )
}

/// The LMTP greeting's host name: the support address's domain.
fn lmtp_host(address: &str) -> String {
    address
        .rsplit_once('@')
        .map_or("postdesk", |(_, domain)| domain)
        .to_string()
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

/// The IMAP watcher's sink: the intake seam, then a nudge to the sender.
struct StoreSink {
    store: Arc<Store>,
    pipeline: Arc<Pipeline>,
    outbox_wake: Arc<Notify>,
    /// Where the batches are written (see `intake::ingest_thread`).
    ingest: Arc<crate::intake::IngestThread>,
    /// The IMAP login: the account in each mail's source.
    account: String,
    /// The key of this mailbox's checkpoint (`Queue::checkpoint_key`).
    checkpoint_key: String,
}

impl MailSink for StoreSink {
    // One sink per mailbox, and the watcher reads one folder: the key
    // stands for that folder of that account.
    async fn checkpoint(&self, _folder: &str) -> anyhow::Result<Option<Checkpoint>> {
        let store = Arc::clone(&self.store);
        let key = self.checkpoint_key.clone();
        tokio::task::spawn_blocking(move || store.checkpoint(&key)).await?
    }

    async fn ingest_batch(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        mails: Arc<[FetchedMail]>,
        checkpoint: Option<u32>,
    ) -> anyhow::Result<()> {
        let store = Arc::clone(&self.store);
        let pipeline = Arc::clone(&self.pipeline);
        let (account, folder) = (self.account.clone(), mailbox.to_string());
        let key = self.checkpoint_key.clone();
        let verdicts = self
            .ingest
            .run(move || {
                let batch = crate::intake::ImapBatch {
                    account: &account,
                    folder: &folder,
                    checkpoint_key: &key,
                    uidvalidity,
                    checkpoint,
                };
                crate::intake::receive_batch(&store, &pipeline, &batch, mails, Utc::now())
            })
            .await?;
        // Nothing is marked unless the whole batch committed.
        if let Some(failure) = verdicts.iter().find(|v| !v.committed()) {
            anyhow::bail!("the batch was not stored: {failure}");
        }
        if verdicts.iter().map(Verdict::queued).sum::<usize>() > 0 {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    fn upcoming(&self, mails: &Arc<[FetchedMail]>) {
        self.store.upcoming_batch(Arc::clone(mails));
    }
}

/// Logs one ingest result as a sentence; returns how many mails it queued.
pub fn log_report(report: &IngestReport) -> usize {
    let verdict = Verdict::from(report.clone());
    verdict.log("retry");
    verdict.queued()
}
