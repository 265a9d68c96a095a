//! IMAP: connects to the support mailbox, waits for mail (IDLE, or polling
//! where IDLE is off or unsupported), fetches every message above the UID
//! checkpoint (on a first start, with no checkpoint, only the unread ones)
//! and hands the raw bytes to a [`MailSink`]. Only after the sink
//! says the mail is committed does it flag, move or delete it on the server.
//! Memory is bounded by the sizes the server declares (RFC822.SIZE) before
//! any body is fetched: a batch holds at most [`FetchLimits::batch_bytes`],
//! and of a mail over `limits.max_message_bytes` only the header is
//! fetched. It must not parse mail or touch the database itself.

use std::future::Future;

/// The last UID stored for a mailbox, valid only under its UIDVALIDITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

/// One message as fetched from the server.
#[derive(Debug, Clone)]
pub struct FetchedMail {
    pub uid: u32,
    /// The whole mail, or only its header section when `oversize` is set.
    pub raw: Vec<u8>,
    /// `Some(declared full size)` when the mail was over
    /// `limits.max_message_bytes` and only its header was fetched: the
    /// whole mail stays on the server.
    pub oversize: Option<u64>,
}

impl FetchedMail {
    /// A mail fetched whole.
    pub fn whole(uid: u32, raw: Vec<u8>) -> FetchedMail {
        FetchedMail {
            uid,
            raw,
            oversize: None,
        }
    }
}

/// Where fetched mail goes. Implemented by the app over the store.
pub trait MailSink: Send + Sync + 'static {
    /// The committed checkpoint of `mailbox`, if any.
    fn checkpoint(
        &self,
        mailbox: &str,
    ) -> impl Future<Output = anyhow::Result<Option<Checkpoint>>> + Send;

    /// Stores `mails` durably and, in the same transaction, moves the
    /// checkpoint of `mailbox` (under `uidvalidity`) up to `checkpoint`
    /// where one is given (never down); returns once committed. The
    /// watcher passes the batch's highest UID, except on a first start
    /// (see `watch.rs`): no checkpoint with the batches before the last,
    /// the mailbox's highest UID with the last one (with no mails at all
    /// when nothing was unread). A mail that cannot be processed is
    /// quarantined by the sink and still counts as committed. An `Err` is
    /// a temporary failure: nothing is marked, the batch is fetched again
    /// later.
    fn ingest_batch(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        mails: Arc<[FetchedMail]>,
        checkpoint: Option<u32>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// `mails` are the batch handed to [`MailSink::ingest_batch`] next,
    /// fetched while the batch before is stored: a hint, so that the sink
    /// may start reading them early. Must not block.
    fn upcoming(&self, _mails: &Arc<[FetchedMail]>) {}
}

mod batch;
mod command;
mod connect;
pub(crate) use connect::tls_client_config;
mod history;
mod mailbox;
mod watch;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

pub use batch::FetchLimits;
pub use command::Refused;
pub use connect::{ImapSession, ImapStream, append, connect, connect_with, logout};
pub use history::{HistoryCount, read_history};
pub use mailbox::read_mailbox;
pub use watch::run;

/// Live figures of the IMAP watcher, shared with `/metrics` and logs.
#[derive(Debug, Default)]
pub struct ImapStatus {
    /// Logged in with the mailbox selected.
    pub connected: AtomicBool,
    /// Unix time (seconds) of the last successful look for new mail.
    pub last_fetch_unix: AtomicI64,
    /// Messages handed to the sink and committed since start.
    pub fetched_total: AtomicU64,
    /// The mailbox's OAuth2 token source when IMAP or SMTP logs in with
    /// XOAUTH2: the watcher logs in with it, `/metrics` reports its health.
    pub oauth: Option<std::sync::Arc<crate::oauth::TokenSource>>,
    /// The mailbox's lease (`crate::lease`): who reads it (this daemon or
    /// another sharing the database); `None` until first asked.
    pub lease: std::sync::Mutex<Option<LeaseState>>,
}

/// Who holds a mailbox's lease, as this daemon last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// This daemon reads the mailbox now (its watcher runs).
    pub held_here: bool,
    /// The daemon holding the lease; `None` while nobody does, or while
    /// this daemon cannot tell (it just gave the lease up, or the database
    /// does not answer).
    pub holder: Option<String>,
}

impl ImapStatus {
    pub fn new() -> Self {
        Self::default()
    }

    /// The lease as last seen (a poisoned lock still holds a valid value).
    pub fn lease(&self) -> Option<LeaseState> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_lease(&self, state: LeaseState) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    /// The watcher has stopped: the mailbox is not read here. Who reads
    /// it instead is unknown until the next look at the lease.
    pub fn stop_reading(&self) {
        let mut lease = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = lease.as_mut().filter(|s| s.held_here) {
            state.held_here = false;
            state.holder = None;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn last_fetch_unix(&self) -> i64 {
        self.last_fetch_unix.load(Ordering::Relaxed)
    }

    pub fn fetched_total(&self) -> u64 {
        self.fetched_total.load(Ordering::Relaxed)
    }
}

/// Every IMAP watcher's [`ImapStatus`], one per mailbox (queue) that reads
/// IMAP, in the order of the settings: what `/metrics` and `/healthz`
/// report, so that they say which mailbox is down. Empty when IMAP is off.
#[derive(Debug, Default)]
pub struct ImapBoard {
    mailboxes: Vec<(String, std::sync::Arc<ImapStatus>)>,
}

impl ImapBoard {
    /// `(queue name, its watcher's status)` for each watched mailbox.
    pub fn new(mailboxes: Vec<(String, std::sync::Arc<ImapStatus>)>) -> Self {
        ImapBoard { mailboxes }
    }

    /// A board of one mailbox (tests, and single-queue tools).
    pub fn single(queue: &str, status: std::sync::Arc<ImapStatus>) -> Self {
        Self::new(vec![(queue.to_string(), status)])
    }

    pub fn mailboxes(&self) -> &[(String, std::sync::Arc<ImapStatus>)] {
        &self.mailboxes
    }

    /// The status of `queue`'s mailbox, if it is watched.
    pub fn of(&self, queue: &str) -> Option<&std::sync::Arc<ImapStatus>> {
        self.mailboxes
            .iter()
            .find(|(name, _)| name == queue)
            .map(|(_, status)| status)
    }
}
