//! The receive entry: one mail (LMTP, the pipe) or one IMAP batch through
//! the store's ingest, its report or error turned into a [`Verdict`].
//! Blocking (the store is synchronous): the daemon's IMAP batches run it on
//! its [`IngestThread`](super::IngestThread), one LMTP mail
//! on `spawn_blocking`. The store keeps its transaction, time budget and
//! in-flight logic; this only frames them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Source, Verdict};
use crate::imap::FetchedMail;
use crate::ingest::{Pipeline, panic_message};
use crate::store::Store;

/// Receives one whole mail: stored once, in one transaction.
pub fn receive(
    store: &Store,
    pipeline: &Pipeline,
    source: &Source,
    raw: Vec<u8>,
    now: DateTime<Utc>,
) -> Verdict {
    receive_fetched(store, pipeline, source, FetchedMail::whole(0, raw), now)
}

/// [`receive`] for a mail that may be only the header of an oversize one
/// (`mail.oversize` set): it is kept in the quarantine with that header,
/// and the sender told, as IMAP does with a mail it would not fetch.
pub fn receive_fetched(
    store: &Store,
    pipeline: &Pipeline,
    source: &Source,
    mail: FetchedMail,
    now: DateTime<Utc>,
) -> Verdict {
    // The store contains a panic in one mail's processing; one outside it
    // (the store itself) must still not take the front end down.
    let result = catch_unwind(AssertUnwindSafe(|| {
        store.ingest_fetched(pipeline, mail, source, now)
    }));
    let verdict = match result {
        Ok(Ok(report)) => Verdict::from(report),
        Ok(Err(err)) => Verdict::temporary(&err),
        Err(panic) => Verdict::TemporaryFailure {
            error: format!("storing panicked: {}", panic_message(panic.as_ref())),
        },
    };
    verdict.log(&source.describe());
    verdict
}

/// Where an IMAP batch came from and where its checkpoint moves.
#[derive(Debug, Clone)]
pub struct ImapBatch<'a> {
    /// The IMAP login (the support mailbox's account).
    pub account: &'a str,
    pub folder: &'a str,
    /// The key of the mailbox's checkpoint (`Queue::checkpoint_key`: the
    /// folder alone for the first queue, account and folder for others).
    pub checkpoint_key: &'a str,
    pub uidvalidity: u32,
    /// The UID the checkpoint moves up to with this batch, if any.
    pub checkpoint: Option<u32>,
}

/// Receives an IMAP batch in one transaction with its checkpoint: one
/// verdict per mail, in order. When the transaction fails, every mail's
/// verdict is the same temporary failure (nothing was stored, nothing may
/// be marked).
pub fn receive_batch(
    store: &Store,
    pipeline: &Pipeline,
    batch: &ImapBatch,
    mails: impl Into<Arc<[FetchedMail]>>,
    now: DateTime<Utc>,
) -> Vec<Verdict> {
    let mails = mails.into();
    let count = mails.len();
    let at = (batch.checkpoint_key, batch.uidvalidity, batch.checkpoint);
    let source =
        |mail: &FetchedMail| Source::imap(batch.account, batch.folder, batch.uidvalidity, mail.uid);
    let result = catch_unwind(AssertUnwindSafe(|| {
        store.ingest_batch_from(pipeline, at, mails, source, now)
    }));
    let failure = match result {
        Ok(Ok(reports)) => {
            let verdicts: Vec<Verdict> = reports.into_iter().map(Verdict::from).collect();
            let where_from = format!("imap:{}", batch.folder);
            for verdict in &verdicts {
                verdict.log(&where_from);
            }
            return verdicts;
        }
        Ok(Err(err)) => Verdict::temporary(&err),
        Err(panic) => Verdict::TemporaryFailure {
            error: format!("storing panicked: {}", panic_message(panic.as_ref())),
        },
    };
    failure.log(&format!("imap:{}, a batch of {count}", batch.folder));
    vec![failure; count.max(1)]
}

/// Receives a batch read by `postdesk import` from `folder` of `account`:
/// history (see [`Source::is_history`]), in one transaction, moving no
/// checkpoint. An error means nothing of the batch was stored.
pub fn receive_history(
    store: &Store,
    pipeline: &Pipeline,
    (account, folder, uidvalidity): (&str, &str, u32),
    mails: Vec<FetchedMail>,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Verdict>> {
    let source = |mail: &FetchedMail| Source::import(account, folder, uidvalidity, mail.uid);
    let reports =
        store.ingest_batch_from(pipeline, (folder, uidvalidity, None), mails, source, now)?;
    Ok(reports.into_iter().map(Verdict::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn setup() -> (tempfile::TempDir, Store, Pipeline) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = Store::open(&dir.path().join("t.db")).expect("a store");
        let settings = Settings::load_with_env(None, Vec::new()).expect("defaults");
        let pipeline = Pipeline::new(&settings, "a-secret-of-enough-length");
        (dir, store, pipeline)
    }

    fn mail(id: &str) -> Vec<u8> {
        format!(
            "From: alice@customer.test\r\nTo: tickets@example.com\r\nSubject: Printer\r\n\
             Message-ID: <{id}@customer.test>\r\n\r\nIt jams.\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn one_mail_twice_is_a_ticket_then_a_duplicate() {
        let (_dir, store, pipeline) = setup();
        let source = Source::lmtp(vec!["tickets@example.com".into()]);
        let first = receive(&store, &pipeline, &source, mail("a"), Utc::now());
        assert!(matches!(first, Verdict::NewTicket { .. }), "{first:?}");
        let again = receive(&store, &pipeline, &source, mail("a"), Utc::now());
        assert_eq!(again, Verdict::Duplicate);
        assert_eq!(store.list_tickets(None).expect("tickets").len(), 1);
    }

    #[test]
    fn a_header_only_mail_is_quarantined_not_refused() {
        let (_dir, store, pipeline) = setup();
        let header = b"From: alice@customer.test\r\nSubject: Huge\r\n\r\n".to_vec();
        let fetched = FetchedMail {
            uid: 0,
            raw: header,
            oversize: Some(99_000_000),
        };
        let verdict = receive_fetched(&store, &pipeline, &Source::Pipe, fetched, Utc::now());
        assert!(
            matches!(verdict, Verdict::Quarantined { .. }),
            "{verdict:?}"
        );
        assert!(verdict.committed());
    }

    #[test]
    fn a_batch_gives_one_verdict_per_mail() {
        let (_dir, store, pipeline) = setup();
        let batch = ImapBatch {
            account: "tickets@example.com",
            folder: "INBOX",
            checkpoint_key: "INBOX",
            uidvalidity: 9,
            checkpoint: Some(2),
        };
        let mails = vec![
            FetchedMail::whole(1, mail("b1")),
            FetchedMail::whole(2, mail("b1")),
        ];
        let verdicts = receive_batch(&store, &pipeline, &batch, mails, Utc::now());
        assert!(matches!(verdicts[0], Verdict::NewTicket { .. }));
        assert_eq!(verdicts[1], Verdict::Duplicate);
        let checkpoint = store.checkpoint("INBOX").expect("read").expect("moved");
        assert_eq!((checkpoint.uidvalidity, checkpoint.last_uid), (9, 2));
    }
}
