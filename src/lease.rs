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

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::imap::{ImapStatus, LeaseState};
use crate::store::{Backend, Store};

/// How long a lease lasts without renewal: a dead daemon's mailboxes are
/// taken over within this and one [`RENEW_EVERY`] (20 s, under the 30 s
/// the issue allows).
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often a held lease is renewed, and a free one asked for.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A daemon silent this long is gone.
pub const SILENCE: Duration = Duration::from_secs(30);

fn ttl() -> chrono::Duration {
    chrono::Duration::from_std(LEASE_TTL).unwrap_or(chrono::Duration::seconds(15))
}

/// Runs `watch` (an IMAP watcher) for `mailbox` while this daemon holds
/// its lease, until `shutdown`; at shutdown the lease is given up.
pub async fn run_leased<F, Fut>(
    store: Arc<Store>,
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
            holder: me,
        });
        return watch(shutdown).await;
    }
    while !shutdown.is_cancelled() {
        if !ask(&store, &mailbox, &status).await.unwrap_or(false) {
            pause(&shutdown).await;
            continue;
        }
        tracing::info!("This daemon ({me}) now reads mailbox {mailbox}.");
        let stop = shutdown.child_token();
        let task = tokio::spawn(watch(stop.clone()));
        let mut renewed = Instant::now();
        loop {
            pause(&shutdown).await;
            if shutdown.is_cancelled() {
                break;
            }
            match ask(&store, &mailbox, &status).await {
                Ok(true) => renewed = Instant::now(),
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
    }
    let (store2, mailbox2) = (Arc::clone(&store), mailbox.clone());
    let released =
        tokio::task::spawn_blocking(move || store2.release_lease(&mailbox2, store2.instance()))
            .await;
    if let Ok(Err(err)) = released {
        tracing::warn!(
            "The lease on mailbox {mailbox} was not given up ({err:#}); it expires in {} s.",
            LEASE_TTL.as_secs()
        );
    }
}

/// Takes or renews the lease; records who holds it.
async fn ask(store: &Arc<Store>, mailbox: &str, status: &ImapStatus) -> anyhow::Result<bool> {
    let (store, key) = (Arc::clone(store), mailbox.to_string());
    let (held, holder) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let now = Utc::now();
        let held = store.take_lease(&key, store.instance(), ttl(), now)?;
        let holder = (store.lease_holders()?.into_iter())
            .find(|l| l.mailbox == key)
            .map(|l| l.holder)
            .unwrap_or_default();
        Ok((held, holder))
    })
    .await??;
    status.set_lease(LeaseState {
        held_here: held,
        holder,
    });
    Ok(held)
}

async fn pause(shutdown: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(RENEW_EVERY) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Tells the other daemons this one is alive, every [`RENEW_EVERY`], and
/// puts back the outbox rows of those gone silent; forgets itself at
/// shutdown.
pub async fn heartbeat(
    store: Arc<Store>,
    outbox_wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    if store.backend() == Backend::Sqlite {
        return; // one daemon: nobody to tell
    }
    let started = Utc::now();
    let silence = chrono::Duration::from_std(SILENCE).unwrap_or(chrono::Duration::seconds(30));
    while !shutdown.is_cancelled() {
        let s = Arc::clone(&store);
        let beat = tokio::task::spawn_blocking(move || {
            s.instance_alive(s.instance(), started, silence, Utc::now())
        })
        .await;
        match beat {
            Ok(Ok(gone)) if !gone.is_empty() => outbox_wake.notify_one(),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!("The heartbeat could not be written: {err:#}"),
            Err(err) => tracing::warn!("The heartbeat task failed: {err}"),
        }
        pause(&shutdown).await;
    }
    let s = Arc::clone(&store);
    let _ = tokio::task::spawn_blocking(move || s.instance_stopped(s.instance())).await;
}
