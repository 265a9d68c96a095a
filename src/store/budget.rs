//! The per-mail time budget of ingest (`limits.max_mail_seconds`): the
//! preparing step (parse, classify, strip) runs on a thread of its own
//! that the writer waits on with a timeout, so that a mail slower than the
//! budget is quarantined instead of stalling the mails behind it (and,
//! since its quarantine is committed with the batch, instead of stalling
//! again after every restart). It owns that thread and the list of mails
//! once quarantined for time; it does not write (that is `ingest.rs`).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::time::Duration;

use rusqlite::Connection;

use crate::imap::FetchedMail;
use crate::ingest::{Pipeline, Prepared};
use crate::tokens::sha256_hex;

/// How many prepared mails may wait for the writer (each holds a parsed
/// mail in memory).
const PREPARED_AHEAD: usize = 4;

/// How a quarantine reason for a mail over the time budget starts: the
/// mark by which a later batch knows not to prepare it again.
pub(super) const OVER_BUDGET: &str = "over the time budget";

/// What the preparing thread hands the writer for one mail.
pub(super) enum Step {
    /// Prepared, or its preparing panicked.
    Ready(std::thread::Result<Prepared>),
    /// Quarantined for time before: not prepared again.
    KnownSlow,
    /// Only the header was fetched (declared this many bytes, over the
    /// limit): nothing to prepare, the writer refuses it.
    HeaderOnly(u64),
}

/// The preparing thread of one batch, from some mail on.
pub(super) struct Preparer {
    prepared: Receiver<Step>,
}

impl Preparer {
    /// Starts preparing `mails[from..]` on a new thread. The thread owns
    /// what it reads (the batch is shared, not copied), so the writer may
    /// abandon it: it ends by itself after the mail it is on, when it
    /// finds the writer gone.
    pub(super) fn start(
        pipeline: &Pipeline,
        mails: &Arc<[FetchedMail]>,
        from: usize,
        known_slow: &Arc<HashSet<String>>,
    ) -> anyhow::Result<Preparer> {
        let (ready, prepared) = sync_channel(PREPARED_AHEAD);
        let pipeline = pipeline.clone();
        let mails = Arc::clone(mails);
        let known_slow = Arc::clone(known_slow);
        std::thread::Builder::new()
            .name("prepare".to_string())
            .spawn(move || {
                for mail in mails.get(from..).unwrap_or_default() {
                    let step = if let Some(size) = mail.oversize {
                        Step::HeaderOnly(size)
                    } else if !known_slow.is_empty() && known_slow.contains(&sha256_hex(&mail.raw))
                    {
                        Step::KnownSlow
                    } else {
                        Step::Ready(prepare_contained(&pipeline, &mail.raw))
                    };
                    if ready.send(step).is_err() {
                        break; // the writer gave up on this thread
                    }
                }
            })
            .map_err(|err| anyhow::anyhow!("cannot start the preparing thread: {err}"))?;
        Ok(Preparer { prepared })
    }

    /// The next mail's step, or `None` when it took longer than `budget`.
    pub(super) fn next(&self, budget: Duration) -> anyhow::Result<Option<Step>> {
        match self.prepared.recv_timeout(budget) {
            Ok(step) => Ok(Some(step)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the preparing thread ended early")
            }
        }
    }
}

/// [`Pipeline::prepare`], with a panic kept as the mail's failure.
pub(super) fn prepare_contained(pipeline: &Pipeline, raw: &[u8]) -> std::thread::Result<Prepared> {
    #[cfg(test)]
    tests::slow_hook(raw);
    catch_unwind(AssertUnwindSafe(|| pipeline.prepare(raw)))
}

/// The content hashes of the mails quarantined for time (few: only
/// hostile mail lands there).
pub(super) fn known_slow(tx: &Connection) -> anyhow::Result<HashSet<String>> {
    let mut statement = tx.prepare_cached(
        "SELECT r.sha256 FROM quarantine q JOIN raw_mails r ON r.id = q.raw_mail_id
         WHERE q.reason LIKE ?1",
    )?;
    let rows = statement.query_map([format!("{OVER_BUDGET}%")], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The quarantine reason of a mail whose `step` took longer than `budget`.
pub(super) fn over_budget_reason(step: &str, budget: Duration) -> String {
    format!(
        "{OVER_BUDGET}: {step} took longer than the limit of {} s (limits.max_mail_seconds)",
        budget.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use chrono::Utc;

    use super::*;
    use crate::settings::Settings;
    use crate::store::{IngestReport, MailSource, Store};

    /// A mail starting with this header takes [`SLOW`] to prepare: the
    /// deliberately slow mail of the tests (real steps are all linear).
    const SLOW_MARK: &[u8] = b"X-Test-Slow: yes\r\n";
    const SLOW: Duration = Duration::from_secs(4);
    static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn slow_hook(raw: &[u8]) {
        if raw.starts_with(SLOW_MARK) {
            SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(SLOW);
        }
    }

    fn desk(budget: Duration) -> (tempfile::TempDir, Store, Pipeline) {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![(
            "POSTDESK__SUPPORT__ADDRESS".to_string(),
            "tickets@support.test".to_string(),
        )];
        let settings = Settings::load_with_env(None, env).unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let mut pipeline = Pipeline::new(&settings, "unit-secret-unit-secret");
        pipeline.max_mail_time = budget;
        (dir, store, pipeline)
    }

    fn mail(uid: u32, slow: bool) -> FetchedMail {
        let mark = if slow { SLOW_MARK } else { b"" };
        let text = format!(
            "From: ann{uid}@customer.test\r\nTo: tickets@support.test\r\n\
             Subject: help {uid}\r\nMessage-ID: <m{uid}@customer.test>\r\n\r\nPlease.\r\n"
        );
        FetchedMail::whole(uid, [mark, text.as_bytes()].concat())
    }

    #[test]
    fn a_mail_over_the_budget_is_quarantined_and_blocks_nothing_nor_comes_back() {
        let (_dir, store, pipeline) = desk(Duration::from_secs(1));
        let batch = vec![mail(1, false), mail(2, true), mail(3, false)];
        let reports = store
            .ingest_batch(&pipeline, "INBOX", 1, batch, Utc::now())
            .unwrap();
        assert!(
            matches!(reports[0], IngestReport::NewTicket { .. }),
            "{reports:?}"
        );
        match &reports[1] {
            IngestReport::Quarantined { reason } => {
                assert!(reason.starts_with(OVER_BUDGET), "{reason}")
            }
            other => panic!("the slow mail was not quarantined: {other:?}"),
        }
        assert!(
            matches!(reports[2], IngestReport::NewTicket { .. }),
            "{reports:?}"
        );

        // A restart (or a UIDVALIDITY change) hands it over again: it is
        // known, not prepared a second time, and no second quarantine.
        let before = SLOW_CALLS.load(Ordering::SeqCst);
        let same_bytes = FetchedMail {
            uid: 7,
            ..mail(2, true)
        };
        let again = store
            .ingest_batch(&pipeline, "INBOX", 2, vec![same_bytes], Utc::now())
            .unwrap();
        assert_eq!(again, vec![IngestReport::Duplicate]);
        assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), before);
        assert_eq!(store.quarantine_list().unwrap().len(), 1);
    }

    #[test]
    fn a_header_only_mail_is_quarantined_as_oversize_and_a_retry_keeps_it() {
        let (_dir, store, mut pipeline) = desk(Duration::from_secs(5));
        pipeline.max_message_bytes = 10_000;
        let whole = mail(2, false).raw;
        let header = whole[..whole.len() - "Please.\r\n".len()].to_vec();
        let big = FetchedMail {
            oversize: Some(30_000_000),
            ..FetchedMail::whole(2, header.clone())
        };
        let batch = vec![mail(1, false), big, mail(3, false)];
        let reports = store
            .ingest_batch(&pipeline, "INBOX", 9, batch, Utc::now())
            .unwrap();
        let IngestReport::Quarantined { reason } = &reports[1] else {
            panic!("not quarantined: {reports:?}");
        };
        assert!(
            reason.contains("30000000 bytes, more than the limit of 10000 bytes")
                && reason.contains("the full mail stays on the IMAP server")
                && reason.contains("mailbox INBOX, UID 2"),
            "{reason}"
        );
        assert!(matches!(reports[2], IngestReport::NewTicket { .. }));
        let notices: Vec<(String, String)> = store
            .read(|c| {
                let mut st =
                    c.prepare("SELECT recipients, raw FROM outbox WHERE kind = 'status'")?;
                let rows = st.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        String::from_utf8_lossy(&r.get::<_, Vec<u8>>(1)?).into(),
                    ))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .unwrap();
        let notice = notices
            .iter()
            .find(|(to, _)| to == "ann2@customer.test")
            .expect("the sender is told");
        assert!(notice.1.contains("30000000 bytes"), "{}", notice.1);
        assert!(!notice.1.contains("UID"), "no server details to the sender");
        let items = store.quarantine_list().unwrap();
        assert_eq!(items[0].size, 30_000_000, "the declared size is kept");

        // Raising the limit cannot make a ticket of the header alone.
        pipeline.max_message_bytes = 50_000_000;
        let retried = store
            .quarantine_retry(&pipeline, items[0].id, Utc::now())
            .unwrap();
        let Some(crate::store::RetryOutcome::StillQuarantined { reason }) = retried else {
            panic!("the header alone was processed: {retried:?}");
        };
        assert!(reason.contains("postdesk ingest"), "{reason}");
        assert_eq!(store.list_tickets(None).unwrap().len(), 2);
    }

    #[test]
    fn deciding_over_the_budget_is_rolled_back_and_quarantined() {
        let (_dir, store, pipeline) = desk(Duration::ZERO);
        let raw = mail(1, false).raw;
        let report = store
            .ingest_mail(&pipeline, raw.as_slice(), &MailSource::Pipe, Utc::now())
            .unwrap();
        let IngestReport::Quarantined { reason } = report else {
            panic!("not quarantined: {report:?}");
        };
        assert!(reason.starts_with(OVER_BUDGET), "{reason}");
        assert!(
            store.list_tickets(None).unwrap().is_empty(),
            "the ticket was kept"
        );
        let again = store
            .ingest_mail(&pipeline, raw.as_slice(), &MailSource::Pipe, Utc::now())
            .unwrap();
        assert_eq!(again, IngestReport::Duplicate);
    }
}
