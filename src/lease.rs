//! The daemon's side of sharing a database with other daemons: each
//! mailbox is read only while this daemon holds its lease (taken, then
//! renewed every [`RENEW_EVERY`]; lost or unrenewable, the watcher stops
//! before the lease can expire for the others), and a heartbeat tells the
//! others this daemon is alive (a silent one's claimed outbox rows are
//! queued again). With SQLite there is one daemon: no lease is asked for
//! and no heartbeat written.
//! The claims themselves are the store's (`store::leases`); this module
//! only decides when to ask.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::imap::{ImapStatus, LeaseState};
use crate::store::{Backend, Store};

/// How long a lease lasts without renewal: a dead daemon's mailboxes are
/// taken over within this and one [`RENEW_EVERY`] (20 s, under the 30 s
/// the issue allows).
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often a held lease is renewed, and a free one asked for.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A daemon silent this long is gone (its claimed mail is queued again).
/// Twice what a 20 s database restart plus a reconnect take, so a live
/// daemon is never taken for gone and its mail sent twice.
pub const SILENCE: Duration = Duration::from_secs(60);

/// What a daemon's mailbox tasks share to spread mailboxes over the
/// daemons: each takes at most its fair share (mailboxes / live daemons,
/// rounded up) while others may want them, and one over its share gives
/// one up at a time, so a daemon that joins gets work without flapping.
pub struct LeaseBoard {
    mailboxes: usize,
    last_release: std::sync::Mutex<Option<Instant>>,
}

impl LeaseBoard {
    pub fn new(mailboxes: usize) -> Arc<LeaseBoard> {
        Arc::new(LeaseBoard {
            mailboxes,
            last_release: std::sync::Mutex::new(None),
        })
    }

    fn share(&self, live_daemons: usize) -> usize {
        self.mailboxes.div_ceil(live_daemons.max(1))
    }

    /// Whether this task may give its mailbox up now (one at a time, two
    /// rounds apart, so the others can take it first).
    fn may_release(&self) -> bool {
        let mut last = self.last_release.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < RENEW_EVERY * 2) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

/// Runs `watch` (an IMAP watcher) for `mailbox` while this daemon holds
/// its lease, until `shutdown`; at shutdown the lease is given up.
pub async fn run_leased<F, Fut>(
    store: Arc<Store>,
    board: Arc<LeaseBoard>,
    mailbox: String,
    status: Arc<ImapStatus>,
    shutdown: CancellationToken,
    watch: F,
) where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let me = store.instance().to_string();
    if store.backend() == Backend::Sqlite {
        // One daemon per SQLite file: the mailbox is its own.
        status.set_lease(LeaseState {
            held_here: true,
            holder: Some(me),
        });
        return watch(shutdown).await;
    }
    // Rounds this task let a free mailbox be, being at its share: after
    // two, nobody else wanted it and it is taken anyway.
    let mut declined = 0;
    while !shutdown.is_cancelled() {
        let at_share = load(&store)
            .await
            .is_ok_and(|(mine, live)| mine >= board.share(live));
        if at_share && declined < 2 {
            declined += 1;
            look(&store, &mailbox, &status).await;
            pause(&shutdown).await;
            continue;
        }
        if !ask(&store, &mailbox, &status).await.unwrap_or(false) {
            pause(&shutdown).await;
            continue;
        }
        declined = 0;
        tracing::info!("This daemon ({me}) now reads mailbox {mailbox}.");
        let stop = shutdown.child_token();
        let task = tokio::spawn(watch(stop.clone()));
        let mut renewed = Instant::now();
        let mut hand_over = false;
        loop {
            pause(&shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            // Never wait on the database past the lease: a renewal that
            // hangs is a lost lease.
            let left = LEASE_TTL.saturating_sub(renewed.elapsed() + RENEW_EVERY / 2);
            let asked = tokio::time::timeout(left, ask(&store, &mailbox, &status))
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the database did not answer in time")));
            match asked {
                Ok(true) => {
                    renewed = Instant::now();
                    let over = load(&store)
                        .await
                        .is_ok_and(|(mine, live)| mine > board.share(live));
                    if over && board.may_release() {
                        tracing::info!(
                            "This daemon reads more than its share of mailboxes; it hands {mailbox} over."
                        );
                        hand_over = true;
                        break;
                    }
                }
                Ok(false) => {
                    tracing::warn!(
                        "Another daemon took mailbox {mailbox}; this one stops reading it."
                    );
                    break;
                }
                // The database may be back soon; stop before the lease
                // could expire under us, so two never read at once.
                Err(err) if renewed.elapsed() + RENEW_EVERY >= LEASE_TTL => {
                    tracing::warn!(
                        "The lease on mailbox {mailbox} could not be renewed ({err:#}); this daemon stops reading it."
                    );
                    break;
                }
                Err(err) => {
                    tracing::warn!("Renewing the lease on mailbox {mailbox} failed: {err:#}")
                }
            }
        }
        stop.cancel();
        let _ = task.await;
        // Not read here any more, whoever the database names: `/healthz`
        // must not say so until this daemon reads it again.
        status.stop_reading();
        if hand_over {
            release(&store, &mailbox).await;
            // Let another daemon take it first.
            pause(&shutdown).await;
        }
    }
    release(&store, &mailbox).await;
}

/// Gives the lease up, so another daemon takes it at once.
async fn release(store: &Arc<Store>, mailbox: &str) {
    let (store, key) = (Arc::clone(store), mailbox.to_string());
    let released =
        tokio::task::spawn_blocking(move || store.release_lease(&key, store.instance())).await;
    if let Ok(Err(err)) = released {
        tracing::warn!(
            "The lease on mailbox {mailbox} was not given up ({err:#}); it expires in {} s.",
            LEASE_TTL.as_secs()
        );
    }
}

/// The mailboxes this daemon holds, and the daemons sharing the work:
/// those that beat within a lease's length (a live one beats every
/// [`RENEW_EVERY`]). Not [`SILENCE`]: a daemon killed a minute ago must not
/// count, or the survivors would wait at their share while its mailboxes
/// lie free.
async fn load(store: &Arc<Store>) -> anyhow::Result<(usize, usize)> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || store.lease_load(store.instance(), LEASE_TTL)).await?
}

/// Takes or renews the lease; records who holds it.
async fn ask(store: &Arc<Store>, mailbox: &str, status: &ImapStatus) -> anyhow::Result<bool> {
    let (store, key) = (Arc::clone(store), mailbox.to_string());
    let (held, holder) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let held = store.take_lease(&key, store.instance(), LEASE_TTL)?;
        Ok((held, holder_of(&store, &key)?))
    })
    .await??;
    status.set_lease(LeaseState {
        held_here: held,
        holder,
    });
    Ok(held)
}

/// Records who holds the lease while this daemon does not read the
/// mailbox (it waits at its share), so its `/healthz` names the reader
/// another daemon has become. A lease still in this daemon's own name (a
/// renewal failed, the database came back before it expired) names no
/// reader. A database that does not answer leaves the last look.
async fn look(store: &Arc<Store>, mailbox: &str, status: &ImapStatus) {
    let (store, key) = (Arc::clone(store), mailbox.to_string());
    let me = store.instance().to_string();
    let seen = tokio::task::spawn_blocking(move || holder_of(&store, &key)).await;
    if let Ok(Ok(holder)) = seen {
        status.set_lease(LeaseState {
            held_here: false,
            holder: holder.filter(|h| *h != me),
        });
    }
}

/// The daemon holding `mailbox`'s live lease, if any.
fn holder_of(store: &Store, mailbox: &str) -> anyhow::Result<Option<String>> {
    let holders = store.lease_holders()?;
    Ok((holders.into_iter())
        .find(|l| l.mailbox == mailbox)
        .map(|l| l.holder))
}

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(RENEW_EVERY) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Tells the other daemons this one is alive, every [`RENEW_EVERY`], and
/// puts back the outbox rows of those gone silent. It does not forget
/// itself at shutdown: [`stopped`] does, once the sender has finished.
pub async fn heartbeat(
    store: Arc<Store>,
    outbox_wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    if store.backend() == Backend::Sqlite {
        return; // one daemon: nobody to tell
    }
    while !shutdown.is_cancelled() {
        let s = Arc::clone(&store);
        let beat =
            tokio::task::spawn_blocking(move || s.instance_alive(s.instance(), SILENCE)).await;
        match beat {
            Ok(Ok(gone)) if !gone.is_empty() => outbox_wake.notify_one(),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!("The heartbeat could not be written: {err:#}"),
            Err(err) => tracing::warn!("The heartbeat task failed: {err}"),
        }
        pause(&shutdown).await;
    }
}

/// A clean stop, after every task has finished (the sender too): what this
/// daemon left `sending` is queued again and it is forgotten at once.
pub async fn stopped(store: Arc<Store>) {
    let result =
        tokio::task::spawn_blocking(move || store.instance_stopped(store.instance())).await;
    if let Ok(Err(err)) = result {
        tracing::warn!(
            "This daemon could not sign off ({err:#}); the others take its mail over after {} s.",
            SILENCE.as_secs()
        );
    }
}
