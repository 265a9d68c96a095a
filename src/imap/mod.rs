//! IMAP: connects to the support mailbox, waits for mail (IDLE, or polling
//! where IDLE is off or unsupported), fetches every message above the UID
//! checkpoint and hands the raw bytes to a [`MailSink`]. Only after the sink
//! says the mail is committed does it flag, move or delete it on the server.
//! It must not parse mail or touch the database itself.

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
    pub raw: Vec<u8>,
}

/// Where fetched mail goes. Implemented by the app over the store.
pub trait MailSink: Send + Sync + 'static {
    /// The committed checkpoint of `mailbox`, if any.
    fn checkpoint(
        &self,
        mailbox: &str,
    ) -> impl Future<Output = anyhow::Result<Option<Checkpoint>>> + Send;

    /// Stores `mails` durably, each with the checkpoint (mailbox,
    /// uidvalidity, uid), and returns once committed. A mail that cannot be
    /// processed is quarantined by the sink and still counts as committed.
    /// An `Err` is a temporary failure: nothing is marked, the batch is
    /// fetched again later.
    fn ingest_batch(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        mails: Vec<FetchedMail>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

// --- temporary stand-in until the IMAP loop lands ---
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};

/// What the IMAP task reports for /metrics.
#[derive(Debug, Default)]
pub struct ImapStatus {
    pub connected: AtomicBool,
    pub last_fetch_unix: AtomicI64,
    pub fetched_total: AtomicU64,
}

pub async fn run<S: MailSink>(
    _settings: crate::settings::ImapSettings,
    _sink: Arc<S>,
    _status: Arc<ImapStatus>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    shutdown.cancelled().await;
}
