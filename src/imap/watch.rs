//! The watch loop: keep one session on the support mailbox, fetch every
//! message above the committed UID checkpoint (on a first start, with no
//! checkpoint, only the unread ones: `first.rs`) in batches bounded by the
//! sizes the server declares (`batch.rs`), hand each batch to the
//! [`MailSink`], mark the batch only after the sink said it is committed
//! (`mark.rs`), then wait (IDLE, or polling) and start over; reconnect with
//! capped backoff on any error; stop promptly when the shutdown token fires,
//! but never in the middle of a batch the sink is storing. It owns the retry and
//! shutdown policy and must not parse mail, touch the store or remember
//! anything across restarts (the sink's checkpoint is the only memory).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{Response, Status};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

use super::batch::{self, Batch, FetchLimits};
use super::command::within;
use super::connect::{ImapSession, connect_with, logout};
use super::mailbox::{Selected, fetch_batch, select, sizes, uids_after};
use super::{FetchedMail, ImapStatus, MailSink};
use crate::settings::ImapSettings;

#[path = "first.rs"]
mod first;
#[path = "mark.rs"]
mod mark;

use mark::Committed;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long DONE, LOGOUT and marks already under way may take at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Watches `settings.mailbox` until `shutdown` is cancelled. Never returns
/// early: every failure is logged and followed by a reconnect. `limits`
/// bound what one batch holds in memory.
pub async fn run<S: MailSink>(
    settings: ImapSettings,
    limits: FetchLimits,
    sink: Arc<S>,
    status: Arc<ImapStatus>,
    shutdown: CancellationToken,
) {
    let watcher = Watcher {
        settings: &settings,
        limits,
        sink: sink.as_ref(),
        status: status.as_ref(),
        shutdown: &shutdown,
        limit: Duration::from_secs(settings.timeout_seconds.max(1)),
    };
    let mut backoff = Backoff::default();
    loop {
        let result = watcher.session(&mut backoff).await;
        status.connected.store(false, Ordering::Relaxed);
        if shutdown.is_cancelled() {
            break;
        }
        let err = result.err().unwrap_or_else(|| anyhow!("the session ended"));
        let delay = backoff.next_delay();
        let secs = delay.as_secs();
        tracing::warn!("IMAP connection lost: {err:#}; reconnecting in {secs} s");
        tokio::select! {
            _ = sleep(delay) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    tracing::info!("The IMAP watcher for {} has stopped.", settings.mailbox);
}

/// Capped exponential backoff: 1 s, 2 s, 4 s … 30 s.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(MAX_BACKOFF);
        delay
    }

    fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

/// How a round of fetching ended.
enum Synced {
    /// Nothing more above the checkpoint: time to wait.
    Quiet,
    /// Shutdown was requested between batches.
    Stopping,
}

/// How handing over one search's mails ended.
enum Piped {
    /// Every batch stored and marked (or left for the catch-up).
    Done,
    /// The sink failed: nothing of that batch was marked.
    SinkFailed,
    /// Shutdown was requested between batches.
    Stopping,
}

enum Woke {
    Server(async_imap::error::Result<IdleResponse>),
    Refresh,
    Shutdown,
}

struct Watcher<'a, S> {
    settings: &'a ImapSettings,
    limits: FetchLimits,
    sink: &'a S,
    status: &'a ImapStatus,
    shutdown: &'a CancellationToken,
    limit: Duration,
}

impl<S: MailSink> Watcher<'_, S> {
    /// One connection's life. `Ok` only when shutdown was requested.
    async fn session(&self, backoff: &mut Backoff) -> anyhow::Result<()> {
        let settings = self.settings;
        let oauth = self.status.oauth.as_deref();
        let mut session = self.cancellable(connect_with(settings, oauth)).await?;
        let mut selected = self
            .cancellable(select(&mut session, &settings.mailbox, self.limit))
            .await?;
        let checkpoint = self
            .cancellable(async { self.sink.checkpoint(&settings.mailbox).await })
            .await
            .context("reading the UID checkpoint")?;
        let mut cursor = match checkpoint {
            Some(c) if c.uidvalidity == selected.uidvalidity => c.last_uid,
            Some(c) => {
                tracing::info!(
                    "The UIDVALIDITY of {} changed from {} to {}; reading every message again \
                     (mails already stored are recognised by their Message-ID).",
                    settings.mailbox,
                    c.uidvalidity,
                    selected.uidvalidity
                );
                0
            }
            None => 0,
        };
        self.status.connected.store(true, Ordering::Relaxed);
        tracing::info!(
            "Connected to IMAP server {}:{} as {}; watching {} (UIDVALIDITY {}) above UID {cursor}.",
            settings.host,
            settings.port,
            settings.username,
            settings.mailbox,
            selected.uidvalidity
        );
        self.catch_up(&mut session, &mut selected, cursor).await?;
        let mut sink_backoff = Backoff::default();
        let mut synced = Synced::Quiet;
        if checkpoint.is_none() {
            synced = self
                .first_sync(&mut session, &mut selected, &mut cursor, &mut sink_backoff)
                .await?;
        }
        while let Synced::Quiet = synced {
            synced = self
                .sync(
                    &mut session,
                    &mut selected,
                    &mut cursor,
                    backoff,
                    &mut sink_backoff,
                )
                .await?;
            if let Synced::Stopping = synced {
                break;
            }
            let (back, stopping) = self.wait(session, &selected).await?;
            session = back;
            if stopping {
                break;
            }
        }
        logout(&mut session, SHUTDOWN_GRACE).await;
        Ok(())
    }

    /// Fetches and hands over everything above `cursor`, batch by batch,
    /// searching again until nothing new turns up.
    async fn sync(
        &self,
        session: &mut ImapSession,
        selected: &mut Selected,
        cursor: &mut u32,
        backoff: &mut Backoff,
        sink_backoff: &mut Backoff,
    ) -> anyhow::Result<Synced> {
        let mut rechecked = false;
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(Synced::Stopping);
            }
            let (uids, saw_exists) = self
                .cancellable(uids_after(session, *cursor, self.limit))
                .await?;
            self.status
                .last_fetch_unix
                .store(now_unix(), Ordering::Relaxed);
            backoff.reset();
            if uids.is_empty() {
                // An EXISTS that came with the SEARCH answer may announce a
                // message the search did not cover; IDLE would not repeat it.
                if saw_exists && !rechecked {
                    rechecked = true;
                    continue;
                }
                return Ok(Synced::Quiet);
            }
            rechecked = false;
            match self
                .pipeline(session, selected, cursor, &uids, None)
                .await?
            {
                Piped::Done => sink_backoff.reset(),
                Piped::Stopping => return Ok(Synced::Stopping),
                Piped::SinkFailed => {
                    let delay = sink_backoff.next_delay();
                    tracing::warn!("Retrying the same mails in {} s.", delay.as_secs());
                    tokio::select! {
                        _ = sleep(delay) => {}
                        _ = self.shutdown.cancelled() => return Ok(Synced::Stopping),
                    }
                }
            }
        }
    }

    /// Hands `uids` to the sink in batches planned from their declared
    /// sizes, pipelined on the one session: while the sink stores batch k,
    /// the session marks batch k-1 (already committed) and fetches batch
    /// k+1. A batch is marked only after the sink said it is committed;
    /// `cursor` follows the committed batches. `first_top` is the highest
    /// UID of a first start: only the last batch records it.
    async fn pipeline(
        &self,
        session: &mut ImapSession,
        selected: &mut Selected,
        cursor: &mut u32,
        uids: &[u32],
        first_top: Option<u32>,
    ) -> anyhow::Result<Piped> {
        let sizes = self.cancellable(sizes(session, uids, self.limit)).await?;
        let plan = batch::plan(&sizes, &self.limits);
        let mut batches = plan.iter();
        let mut next = match batches.next() {
            Some(batch) => Some((batch, self.fetch(session, batch).await?)),
            None => None,
        };
        // Committed, not yet marked on the server.
        let mut committed = Committed::default();
        while let Some((batch, mails)) = next.take() {
            let following = batches.next();
            let stored = Committed::of(&mails);
            let checkpoint = match first_top {
                Some(top) => following.is_none().then_some(top),
                None => mails.iter().map(|m| m.uid).max(),
            };
            let (name, uidvalidity) = (selected.name.clone(), selected.uidvalidity);
            let previous = std::mem::take(&mut committed);
            let imap = async {
                self.mark_stored(session, selected, &previous).await?;
                let Some(batch) = following.filter(|_| !self.shutdown.is_cancelled()) else {
                    return Ok(None);
                };
                match self.fetch(session, batch).await {
                    Ok(mails) => {
                        self.sink.upcoming(&mails);
                        Ok(Some((batch, mails)))
                    }
                    Err(_) if self.shutdown.is_cancelled() => Ok(None),
                    Err(err) => Err(err),
                }
            };
            // Not cancellable: a batch in the sink's hands is finished.
            let storing = self.store(&name, uidvalidity, mails, checkpoint);
            let (stored_ok, fetched) = tokio::join!(storing, imap);
            if !stored_ok {
                fetched?;
                return Ok(Piped::SinkFailed);
            }
            *cursor = batch.last_uid().unwrap_or(*cursor);
            committed = stored;
            // On a connection error the committed batch stays unmarked:
            // the next session's catch-up marks it.
            next = fetched?;
            if self.shutdown.is_cancelled() {
                self.mark_stored(session, selected, &committed).await?;
                return Ok(Piped::Stopping);
            }
        }
        self.mark_stored(session, selected, &committed).await?;
        Ok(Piped::Done)
    }

    async fn fetch(
        &self,
        session: &mut ImapSession,
        batch: &Batch,
    ) -> anyhow::Result<Arc<[FetchedMail]>> {
        let mails = self
            .cancellable(fetch_batch(session, batch, self.limit))
            .await?;
        Ok(mails.into())
    }

    /// Gives `mails` and the `checkpoint` they move to the sink; `false`
    /// when it failed (they stay unmarked on the server and are fetched
    /// again).
    async fn store(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        mails: Arc<[FetchedMail]>,
        checkpoint: Option<u32>,
    ) -> bool {
        let count = mails.len();
        if count == 0 && checkpoint.is_none() {
            return true;
        }
        let stored = self
            .sink
            .ingest_batch(mailbox, uidvalidity, mails, checkpoint)
            .await;
        if let Err(err) = stored {
            tracing::warn!(
                "Storing {count} mails fetched from {mailbox} failed: {err:#}; \
                 they stay unmarked on the server."
            );
            return false;
        }
        self.status
            .fetched_total
            .fetch_add(count as u64, Ordering::Relaxed);
        tracing::debug!("Stored {count} mails from {mailbox}.");
        true
    }

    /// Waits for news: IDLE where enabled and offered, else `poll_seconds`.
    /// Returns the session and whether shutdown was requested.
    async fn wait(
        &self,
        session: ImapSession,
        selected: &Selected,
    ) -> anyhow::Result<(ImapSession, bool)> {
        if self.settings.idle && selected.caps.idle {
            return self.idle(session).await;
        }
        let poll = Duration::from_secs(self.settings.poll_seconds.max(1));
        tokio::select! {
            _ = sleep(poll) => Ok((session, false)),
            _ = self.shutdown.cancelled() => Ok((session, true)),
        }
    }

    /// One IDLE: until the server reports a change, `idle_refresh_seconds`
    /// pass, or shutdown. The outer sleep is needed because async-imap's own
    /// timeout restarts on every `* OK Still here` keepalive.
    async fn idle(&self, session: ImapSession) -> anyhow::Result<(ImapSession, bool)> {
        let mut handle = session.idle();
        self.cancellable(within(self.limit, "starting IDLE", handle.init()))
            .await?;
        let refresh = Duration::from_secs(self.settings.idle_refresh_seconds.max(1));
        let woke = {
            let (wait, _stop) = handle.wait_with_timeout(refresh);
            tokio::select! {
                r = wait => Woke::Server(r),
                _ = sleep(refresh) => Woke::Refresh,
                _ = self.shutdown.cancelled() => Woke::Shutdown,
            }
        };
        match woke {
            Woke::Server(Ok(IdleResponse::NewData(data))) => {
                // A server that answers IDLE with NO, BAD or BYE does not
                // wait with us: Dovecot answered every IDLE at once with
                // "* NO Internal error" on a mailbox deleted and created
                // again under the session, and IDLE, DONE, IDLE looped
                // thousands of times a second. A new session selects the
                // mailbox afresh (and sees its new UIDVALIDITY).
                if let Response::Data {
                    status: status @ (Status::No | Status::Bad | Status::Bye),
                    outcome,
                } = data.parsed()
                {
                    let said = outcome.information.as_deref().unwrap_or_default();
                    bail!("the server answered IDLE with {status:?}: {said}");
                }
                tracing::debug!("IDLE woke up: {:?}", data.parsed());
            }
            Woke::Server(Ok(IdleResponse::Timeout)) | Woke::Refresh | Woke::Shutdown => {}
            // async-imap reports a closed connection as ManualInterrupt;
            // we never interrupt by hand.
            Woke::Server(Ok(IdleResponse::ManualInterrupt)) => {
                bail!("the server closed the connection during IDLE")
            }
            Woke::Server(Err(err)) => return Err(anyhow::Error::new(err).context("while in IDLE")),
        }
        let stopping = self.shutdown.is_cancelled();
        let limit = if stopping {
            SHUTDOWN_GRACE.min(self.limit)
        } else {
            self.limit
        };
        let session = within(limit, "ending IDLE", handle.done()).await?;
        Ok((session, stopping))
    }

    /// Runs `fut` unless shutdown comes first (then it is dropped: only for
    /// steps that lose nothing when cut short).
    async fn cancellable<T>(
        &self,
        fut: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            result = fut => result,
            _ = self.shutdown.cancelled() => Err(anyhow!("shutting down")),
        }
    }

    /// Runs `fut` to the end, but gives up `SHUTDOWN_GRACE` after shutdown.
    async fn finishing<T>(
        &self,
        fut: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let grace = async {
            self.shutdown.cancelled().await;
            sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            result = fut => result,
            _ = grace => Err(anyhow!("shutting down before the server confirmed the marks")),
        }
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let secs: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), FIRST_BACKOFF);
    }
}
