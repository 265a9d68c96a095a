//! Store side of ingest: runs the pure pipeline inside one write
//! transaction (so its facts and its writes agree), each mail under a
//! savepoint and within the time budget (`budget`), has `write` put down
//! its outcome, and moves the IMAP checkpoint, all or nothing. A panic, an
//! error or an overrun in one mail is contained to that mail: it goes to
//! the quarantine; so does a mail the process died on three times
//! (`inflight`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::db::Tx;
use crate::sql_params as params;
use chrono::{DateTime, Utc};

use super::Store;
use super::budget::{self, NextBatch, Preparer, Step};
use super::inflight::{CRASHED_REASON, Inflight, Refusal};
use super::lookup::TxLookup;
use super::quarantine::Kept;
use super::write::{AlreadyStored, RawMail, quarantine, write_outcome};
use crate::domain::TicketNumber;
use crate::imap::FetchedMail;
use crate::ingest::parse::content_key;
use crate::ingest::thread::ThreadLookup;
use crate::ingest::{Pipeline, Prepared, history, panic_message};
use crate::tokens::sha256_hex;

/// Where a mail came from: the intake seam's typed source (the store
/// keeps its `describe()` text with the raw bytes).
pub use crate::intake::Source as MailSource;

/// What became of one mail, for logs and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestReport {
    Duplicate,
    NewTicket {
        number: TicketNumber,
        queued: usize,
    },
    FollowUp {
        number: TicketNumber,
        queued: usize,
    },
    /// Could not be processed: kept in the quarantine.
    Quarantined {
        reason: String,
    },
    /// Machine mail that answers no ticket: kept apart, nothing sent.
    Ignored {
        reason: String,
    },
}

impl Store {
    /// Ingests one mail (from the MTA pipe or a test) in one transaction,
    /// within the per-mail time budget like a batch.
    pub fn ingest_mail(
        &self,
        pipeline: &Pipeline,
        raw: impl Into<Vec<u8>>,
        source: &MailSource,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IngestReport> {
        self.ingest_fetched(pipeline, FetchedMail::whole(0, raw.into()), source, now)
    }

    /// [`Store::ingest_mail`] for a mail that may be only the header of an
    /// oversize one (`mail.oversize`): kept in the quarantine as IMAP's are.
    pub fn ingest_fetched(
        &self,
        pipeline: &Pipeline,
        mail: FetchedMail,
        source: &MailSource,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IngestReport> {
        // Owned, so that a 25 MB mail from the pipe is not copied again.
        let mails: Arc<[FetchedMail]> = Arc::from(vec![mail]);
        let conn = self.write()?;
        let tx = conn.begin()?;
        let mut inflight = Inflight::open(&self.path)?;
        let report = ingest_all(
            &tx,
            pipeline,
            &mails,
            &mut inflight,
            &self.next_batch,
            |_| source.clone(),
            now,
        )?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("ingest gave no report for the mail"))?;
        inflight.clear()?;
        tx.commit()?;
        Ok(report)
    }

    /// Ingests a batch fetched from IMAP and moves the checkpoint past it,
    /// all in one transaction. While the writer applies one mail, a second
    /// thread prepares the next ones (parse, classify, strip: the part that
    /// needs no store), so the two cores share the work. A mail over the
    /// time budget is quarantined and the rest of the batch goes on.
    pub fn ingest_batch(
        &self,
        pipeline: &Pipeline,
        mailbox: &str,
        uidvalidity: u32,
        mails: impl Into<Arc<[FetchedMail]>>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<IngestReport>> {
        let mails: Arc<[FetchedMail]> = mails.into();
        let last = mails.iter().map(|m| m.uid).max();
        self.ingest_batch_at(pipeline, (mailbox, uidvalidity, last), mails, now)
    }

    /// [`Store::ingest_batch`] with the checkpoint given: `at` is (mailbox,
    /// uidvalidity, the UID the checkpoint moves up to, if any). A first
    /// start records the mailbox's highest UID with its last batch, or with
    /// no mail at all (the read mail below it is left alone on purpose).
    pub fn ingest_batch_at(
        &self,
        pipeline: &Pipeline,
        at: (&str, u32, Option<u32>),
        mails: impl Into<Arc<[FetchedMail]>>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<IngestReport>> {
        let (mailbox, uidvalidity, _) = at;
        let source = |mail: &FetchedMail| MailSource::imap("", mailbox, uidvalidity, mail.uid);
        self.ingest_batch_from(pipeline, at, mails, source, now)
    }

    /// [`Store::ingest_batch_at`] with each mail's source made by `source`
    /// (the intake seam's, which knows the IMAP account).
    pub fn ingest_batch_from(
        &self,
        pipeline: &Pipeline,
        at: (&str, u32, Option<u32>),
        mails: impl Into<Arc<[FetchedMail]>>,
        source: impl Fn(&FetchedMail) -> MailSource,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<IngestReport>> {
        let (mailbox, uidvalidity, checkpoint) = at;
        let mails: Arc<[FetchedMail]> = mails.into();
        let conn = self.write()?;
        let tx = conn.begin()?;
        let mut inflight = Inflight::open(&self.path)?;
        let reports = ingest_all(
            &tx,
            pipeline,
            &mails,
            &mut inflight,
            &self.next_batch,
            source,
            now,
        )?;
        if let Some(last) = checkpoint {
            tx.prepare_cached(
                "INSERT INTO imap_checkpoints (mailbox, uidvalidity, last_uid, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(mailbox) DO UPDATE SET uidvalidity = ?2,
                   last_uid = CASE WHEN imap_checkpoints.uidvalidity = ?2
                                    AND imap_checkpoints.last_uid > ?3
                                   THEN imap_checkpoints.last_uid ELSE ?3 END,
                   updated_at = ?4",
            )?
            .execute(params![mailbox, uidvalidity, last, now])?;
        }
        inflight.clear()?;
        let committing = Instant::now();
        tx.commit()?;
        tracing::debug!(
            "Committed {} in {:.1} ms.",
            mail_count(mails.len()),
            millis(committing.elapsed())
        );
        Ok(reports)
    }

    /// Notes `mails` as the batch the caller hands to
    /// [`Store::ingest_batch_from`] next (the IMAP watcher fetches it while
    /// the batch before is stored): the writer starts preparing it once it
    /// has taken every mail of that batch, while it commits. Only a hint:
    /// a batch handed over that is not this one is prepared as usual.
    pub fn upcoming_batch(&self, mails: Arc<[FetchedMail]>) {
        self.next_batch.announce(mails);
    }
}

/// Every mail of `mails` inside the caller's transaction, each prepared on
/// the preparing thread within the time budget and named in the in-flight
/// marker while it is processed. A mail whose preparing runs over the
/// budget is quarantined, its thread abandoned (it ends by itself: every
/// step is linear) and a fresh one prepares the mails after it. Once every
/// mail is taken, the batch announced in `next` starts being prepared.
fn ingest_all(
    tx: &Tx,
    pipeline: &Pipeline,
    mails: &Arc<[FetchedMail]>,
    inflight: &mut Inflight,
    next: &NextBatch,
    source: impl Fn(&FetchedMail) -> MailSource,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<IngestReport>> {
    let known_slow = Arc::new(budget::known_slow(tx)?);
    // After a crash, nothing is prepared ahead: each mail is named in the
    // marker before its preparing starts, so the count lands on the mail
    // that took the process down, not on one the writer was still on.
    let gated = inflight.after_crash();
    let mut preparer = match next.take(mails) {
        Some(started_ahead) if !gated => started_ahead,
        _ => Preparer::start(pipeline, mails, 0, &known_slow, gated)?,
    };
    // A crash while the next batch is prepared ahead, during this one's
    // commit, finds the marker empty; the next start prepares that batch
    // ungated, dies on the same mail with the marker open, and the start
    // after it is gated: one death more before the count starts, never a
    // loop. Not after a crash, nor beside a mail read past the budget.
    let mut ahead_allowed = !gated;
    let mut reports = Vec::with_capacity(mails.len());
    // Where a batch's time goes, for the debug log: the writer's waits
    // for the preparing thread (with each mail's one write to the
    // marker), the first mail's apart (see docs/performance.md).
    let started = Instant::now();
    let (mut waited, mut waited_first) = (Duration::ZERO, Duration::ZERO);
    for (i, mail) in mails.iter().enumerate() {
        let source = source(mail);
        let budget = pipeline.max_mail_time;
        let asked = Instant::now();
        let next = next_step(&preparer, inflight, &mail.raw, budget)?;
        waited += asked.elapsed();
        if i == 0 {
            waited_first = waited;
        }
        let report = match next {
            Next::Step(step) => ingest_step(tx, pipeline, &mail.raw, step, &source, now)?,
            Next::Refused { sha256, refusal } => {
                let reason = match refusal {
                    Refusal::Crashed => CRASHED_REASON.to_string(),
                    Refusal::OverBudget => budget::over_budget_reason("reading the mail", budget),
                };
                let raw = RawMail::whole(&mail.raw, &sha256, &source);
                keep_failed(tx, &raw, reason, now)?
            }
            Next::OverBudget => {
                let sha256 = sha256_hex(&mail.raw);
                inflight.over_budget(&sha256)?;
                ahead_allowed = false;
                preparer.abandon();
                preparer = Preparer::start(pipeline, mails, i + 1, &known_slow, gated)?;
                let reason = budget::over_budget_reason("reading the mail", budget);
                keep_failed(
                    tx,
                    &RawMail::whole(&mail.raw, &sha256, &source),
                    reason,
                    now,
                )?
            }
        };
        reports.push(report);
    }
    tracing::debug!(
        "Wrote {} in {:.1} ms, {:.1} ms of it waiting for them to be read \
         (the first: {:.1} ms).",
        mail_count(mails.len()),
        millis(started.elapsed()),
        millis(waited),
        millis(waited_first)
    );
    if ahead_allowed {
        next.start(pipeline, &known_slow);
    }
    Ok(reports)
}

pub(super) fn millis(time: Duration) -> f64 {
    time.as_secs_f64() * 1e3
}

fn mail_count(count: usize) -> String {
    match count {
        1 => "1 mail".to_string(),
        n => format!("{n} mails"),
    }
}

/// What the writer does with the next mail.
enum Next {
    Step(Step),
    /// Not processed: the marker of a dead process says so.
    Refused {
        sha256: String,
        refusal: Refusal,
    },
    /// Its preparing took longer than the budget.
    OverBudget,
}

/// The next mail's step, the mail named in the in-flight marker first:
/// gated, before its preparing starts (its hash taken here); otherwise,
/// to keep the hash on the preparing thread, once it is prepared (a crash
/// in preparing is then counted against the mail before; the gated run
/// after it puts the count right).
fn next_step(
    preparer: &Preparer,
    inflight: &mut Inflight,
    raw: &[u8],
    budget: std::time::Duration,
) -> anyhow::Result<Next> {
    if preparer.gated() {
        let sha256 = sha256_hex(raw);
        if let Some(refusal) = inflight.enter(&sha256)? {
            preparer.skip()?;
            return Ok(Next::Refused { sha256, refusal });
        }
        return Ok(preparer.next(budget)?.map_or(Next::OverBudget, Next::Step));
    }
    let Some(step) = preparer.next(budget)? else {
        return Ok(Next::OverBudget);
    };
    let sha256 = match &step {
        Step::KnownSlow => return Ok(Next::Step(step)), // not processed
        Step::Ready(Ok(prepared)) => prepared.raw_sha256().to_string(),
        Step::Ready(Err(_)) | Step::HeaderOnly(_) => sha256_hex(raw),
    };
    // Ungated, nothing was carried from a dead process: never refused.
    match inflight.enter(&sha256)? {
        Some(refusal) => Ok(Next::Refused { sha256, refusal }),
        None => Ok(Next::Step(step)),
    }
}

/// One prepared mail (or what stands for it) inside the transaction.
fn ingest_step(
    tx: &Tx,
    pipeline: &Pipeline,
    raw: &[u8],
    step: Step,
    source: &MailSource,
    now: DateTime<Utc>,
) -> anyhow::Result<IngestReport> {
    match step {
        Step::Ready(prepared) => ingest_prepared(tx, pipeline, raw, prepared, source, now),
        Step::KnownSlow => Ok(IngestReport::Duplicate),
        Step::HeaderOnly(size) => {
            let prepared = pipeline.prepare_truncated(raw, size, &source.server_copy());
            ingest_prepared(tx, pipeline, raw, Ok(prepared), source, now)
        }
    }
}

/// One mail inside the caller's transaction, under a savepoint: whatever
/// goes wrong in processing or writing it ends in the quarantine.
/// `stored_size` is the size kept with the bytes: larger than `raw` when
/// only the header of an oversize mail was fetched.
pub(super) fn ingest_one(
    tx: &Tx,
    pipeline: &Pipeline,
    raw: &[u8],
    stored_size: u64,
    source: &MailSource,
    now: DateTime<Utc>,
) -> anyhow::Result<IngestReport> {
    let prepared = if stored_size > raw.len() as u64 {
        Ok(pipeline.prepare_truncated(raw, stored_size, &source.server_copy()))
    } else {
        budget::prepare_contained(pipeline, raw)
    };
    ingest_prepared(tx, pipeline, raw, prepared, source, now)
}

/// [`ingest_one`] for a mail already prepared (or whose preparing
/// panicked). Deciding and writing is timed: over the budget, it is rolled
/// back and the mail quarantined, so a restart does not run it again.
fn ingest_prepared(
    tx: &Tx,
    pipeline: &Pipeline,
    raw: &[u8],
    prepared: std::thread::Result<Prepared>,
    source: &MailSource,
    now: DateTime<Utc>,
) -> anyhow::Result<IngestReport> {
    // Parsing hashed the bytes already; a 200 KB mail costs ~0.1 ms a hash.
    let sha256 = match &prepared {
        Ok(prepared) => prepared.raw_sha256().to_string(),
        Err(_) => sha256_hex(raw),
    };
    let header_only = prepared.as_ref().ok().and_then(Prepared::header_only_size);
    let mail = RawMail {
        size: header_only.unwrap_or(raw.len() as u64),
        ..RawMail::whole(raw, &sha256, source)
    };
    tx.execute_batch("SAVEPOINT one_mail")?;
    let started = Instant::now();
    let attempt = prepared.and_then(|prepared| {
        catch_unwind(AssertUnwindSafe(|| {
            let delivered_to = source.delivered_to();
            if source.is_history() {
                return write_history(tx, pipeline, &mail, prepared, delivered_to, now);
            }
            let lookup = TxLookup::new(tx);
            let outcome = pipeline.decide_from(mail.bytes, prepared, delivered_to, &lookup, now)?;
            write_outcome(tx, &mail, outcome, now)
        }))
    });
    let failure = match attempt {
        Ok(Ok(_)) if started.elapsed() > pipeline.max_mail_time => {
            budget::over_budget_reason("processing", pipeline.max_mail_time)
        }
        Ok(Ok(report)) => {
            tx.execute_batch("RELEASE one_mail")?;
            return Ok(report);
        }
        // The database failed, not the mail: the whole batch is tried
        // again later (IMAP leaves it unmarked, LMTP answers 451).
        Ok(Err(err)) if super::db::is_transient(&err) => {
            let _ = tx.execute_batch("ROLLBACK TO one_mail; RELEASE one_mail");
            return Err(err);
        }
        Ok(Err(err)) if err.is::<AlreadyStored>() => {
            tx.execute_batch("ROLLBACK TO one_mail; RELEASE one_mail")?;
            return Ok(IngestReport::Duplicate);
        }
        Ok(Err(err)) => format!("processing failed: {err:#}"),
        Err(panic) => format!("processing panicked: {}", panic_message(panic.as_ref())),
    };
    tx.execute_batch("ROLLBACK TO one_mail; RELEASE one_mail")?;
    keep_failed(tx, &mail, failure, now)
}

/// An imported mail (`postdesk import`): decided and written as of its own
/// Date with nothing sent (see [`crate::ingest::history`]); a ticket it
/// makes is closed, as the conversation it records is over.
fn write_history(
    tx: &Tx,
    pipeline: &Pipeline,
    mail: &RawMail,
    prepared: Prepared,
    delivered_to: Option<&str>,
    now: DateTime<Utc>,
) -> anyhow::Result<IngestReport> {
    let at = history::history_time(&prepared, now);
    let outcome =
        pipeline.decide_from(mail.bytes, prepared, delivered_to, &TxLookup::new(tx), at)?;
    let report = write_outcome(tx, mail, history::as_history(outcome), at)?;
    if let IngestReport::NewTicket { number, .. } = &report {
        tx.prepare_cached("UPDATE tickets SET status = 'closed' WHERE number = ?1")?
            .execute(params![number.0])?;
    }
    Ok(report)
}

/// Quarantines a mail that failed (an error, a panic, over the budget)
/// under its content hash, unless it is there already.
fn keep_failed(
    tx: &Tx,
    mail: &RawMail,
    failure: String,
    now: DateTime<Utc>,
) -> anyhow::Result<IngestReport> {
    tracing::error!(
        "A mail from {} was quarantined: {failure}",
        mail.source.describe()
    );
    let key = content_key(mail.sha256);
    if TxLookup::new(tx).is_seen(&key)? {
        return Ok(IngestReport::Duplicate);
    }
    quarantine(tx, &key, mail, &failure, Kept::Fault, now)?;
    Ok(IngestReport::Quarantined { reason: failure })
}
