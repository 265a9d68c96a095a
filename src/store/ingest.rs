//! Store side of ingest: runs the pure pipeline inside one write
//! transaction (so its facts and its writes agree) and writes the outcome:
//! the raw mail, the ticket change, the message, attachments, outbox rows,
//! the quarantine and the IMAP checkpoint, all or nothing. A panic or an
//! error in one mail is contained to that mail: it goes to the quarantine.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::Store;
use super::budget::{self, Preparer, Step};
use super::lookup::TxLookup;
use crate::domain::{Direction, Status, TicketNumber};
use crate::imap::FetchedMail;
use crate::ingest::apply::{AccessLink, FailedDelivery, Plan, TicketChange};
use crate::ingest::parse::content_key;
use crate::ingest::thread::ThreadLookup;
use crate::ingest::{Outcome, Pipeline, Prepared, panic_message};
use crate::outbound::compose::OutgoingMail;
use crate::tokens::sha256_hex;

/// Where a mail came from (kept with the raw bytes).
#[derive(Debug, Clone)]
pub enum MailSource {
    Imap {
        mailbox: String,
        uidvalidity: u32,
        uid: u32,
    },
    Pipe,
}

impl MailSource {
    fn describe(&self) -> String {
        match self {
            MailSource::Imap {
                mailbox,
                uidvalidity,
                uid,
            } => {
                format!("imap:{mailbox}:{uidvalidity}:{uid}")
            }
            MailSource::Pipe => "pipe".to_string(),
        }
    }

    /// Where the whole mail stays when only its header was fetched.
    fn server_copy(&self) -> String {
        match self {
            MailSource::Imap {
                mailbox,
                uidvalidity,
                uid,
            } => format!("mailbox {mailbox}, UID {uid}, UIDVALIDITY {uidvalidity}"),
            MailSource::Pipe => "not kept: it came through the pipe".to_string(),
        }
    }
}

/// What became of one mail, for logs and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestReport {
    Duplicate,
    NewTicket { number: TicketNumber, queued: usize },
    FollowUp { number: TicketNumber, queued: usize },
    Quarantined { reason: String },
}

impl Store {
    /// Ingests one mail (from the MTA pipe or a test) in one transaction,
    /// within the per-mail time budget like a batch.
    pub fn ingest_mail(
        &self,
        pipeline: &Pipeline,
        raw: &[u8],
        source: &MailSource,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IngestReport> {
        let mails: Arc<[FetchedMail]> = Arc::from(vec![FetchedMail::whole(0, raw.to_vec())]);
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let report = ingest_all(&tx, pipeline, &mails, |_| source.clone(), now)?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("ingest gave no report for the mail"))?;
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
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let source = |mail: &FetchedMail| MailSource::Imap {
            mailbox: mailbox.to_string(),
            uidvalidity,
            uid: mail.uid,
        };
        let reports = ingest_all(&tx, pipeline, &mails, source, now)?;
        if let Some(last) = mails.iter().map(|m| m.uid).max() {
            tx.prepare_cached(
                "INSERT INTO imap_checkpoints (mailbox, uidvalidity, last_uid, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(mailbox) DO UPDATE SET uidvalidity = ?2,
                   last_uid = max(CASE WHEN uidvalidity = ?2 THEN last_uid ELSE 0 END, ?3),
                   updated_at = ?4",
            )?
            .execute(params![mailbox, uidvalidity, last, now])?;
        }
        tx.commit()?;
        Ok(reports)
    }
}

/// Every mail of `mails` inside the caller's transaction, each prepared on
/// the preparing thread within the time budget. A mail whose preparing
/// runs over it is quarantined, its thread abandoned (it ends by itself:
/// every step is linear) and a fresh one prepares the mails after it.
fn ingest_all(
    tx: &Connection,
    pipeline: &Pipeline,
    mails: &Arc<[FetchedMail]>,
    source: impl Fn(&FetchedMail) -> MailSource,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<IngestReport>> {
    let known_slow = Arc::new(budget::known_slow(tx)?);
    let mut preparer = Preparer::start(pipeline, mails, 0, &known_slow)?;
    let mut reports = Vec::with_capacity(mails.len());
    for (i, mail) in mails.iter().enumerate() {
        let source = source(mail);
        let report = match preparer.next(pipeline.max_mail_time)? {
            Some(Step::Ready(prepared)) => {
                ingest_prepared(tx, pipeline, &mail.raw, prepared, &source, now)?
            }
            Some(Step::KnownSlow) => IngestReport::Duplicate,
            Some(Step::HeaderOnly(size)) => {
                let prepared = pipeline.prepare_truncated(&mail.raw, size, &source.server_copy());
                ingest_prepared(tx, pipeline, &mail.raw, Ok(prepared), &source, now)?
            }
            None => {
                preparer = Preparer::start(pipeline, mails, i + 1, &known_slow)?;
                let reason = budget::over_budget_reason("reading the mail", pipeline.max_mail_time);
                let sha256 = sha256_hex(&mail.raw);
                let raw = RawMail::whole(&mail.raw, &sha256, &source);
                keep_failed(tx, &raw, reason, now)?
            }
        };
        reports.push(report);
    }
    Ok(reports)
}

/// One mail inside the caller's transaction, under a savepoint: whatever
/// goes wrong in processing or writing it ends in the quarantine.
/// `stored_size` is the size kept with the bytes: larger than `raw` when
/// only the header of an oversize mail was fetched.
pub(super) fn ingest_one(
    tx: &Connection,
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
    tx: &Connection,
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
            let outcome = pipeline.decide(mail.bytes, prepared, &TxLookup(tx), now)?;
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
        Ok(Err(err)) => format!("processing failed: {err:#}"),
        Err(panic) => format!("processing panicked: {}", panic_message(panic.as_ref())),
    };
    tx.execute_batch("ROLLBACK TO one_mail; RELEASE one_mail")?;
    keep_failed(tx, &mail, failure, now)
}

/// Quarantines a mail that failed (an error, a panic, over the budget)
/// under its content hash, unless it is there already.
fn keep_failed(
    tx: &Connection,
    mail: &RawMail,
    failure: String,
    now: DateTime<Utc>,
) -> anyhow::Result<IngestReport> {
    tracing::error!(
        "A mail from {} was quarantined: {failure}",
        mail.source.describe()
    );
    let key = content_key(mail.sha256);
    if TxLookup(tx).is_seen(&key)? {
        return Ok(IngestReport::Duplicate);
    }
    quarantine(tx, &key, mail, &failure, now)?;
    Ok(IngestReport::Quarantined { reason: failure })
}

/// A mail's bytes as they are kept in `raw_mails`.
struct RawMail<'a> {
    bytes: &'a [u8],
    sha256: &'a str,
    source: &'a MailSource,
    /// The mail's size: `bytes.len()`, or the declared full size when
    /// `bytes` is only the header of an oversize mail (so a retry knows).
    size: u64,
}

impl<'a> RawMail<'a> {
    fn whole(bytes: &'a [u8], sha256: &'a str, source: &'a MailSource) -> RawMail<'a> {
        RawMail {
            bytes,
            sha256,
            source,
            size: bytes.len() as u64,
        }
    }
}

fn write_outcome(
    tx: &Connection,
    raw: &RawMail,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> anyhow::Result<IngestReport> {
    match outcome {
        Outcome::Duplicate => Ok(IngestReport::Duplicate),
        Outcome::Quarantine {
            reason,
            dedup_key,
            notice,
        } => {
            quarantine(tx, &dedup_key, raw, &reason, now)?;
            if let Some(notice) = notice {
                enqueue(tx, None, &notice, now)?;
            }
            tracing::warn!("A mail was quarantined: {reason}");
            Ok(IngestReport::Quarantined { reason })
        }
        Outcome::Stored(plan) => write_plan(tx, raw, &plan, now),
    }
}

fn write_plan(
    tx: &Connection,
    raw: &RawMail,
    plan: &Plan,
    now: DateTime<Utc>,
) -> anyhow::Result<IngestReport> {
    let raw_id = insert_raw(tx, &plan.dedup_key, raw, now)?;
    let number = plan.ticket.number();
    match &plan.ticket {
        TicketChange::Create(t) => {
            tx.prepare_cached(
                "INSERT INTO tickets (number, subject, status, requester, requester_name,
                   created_at, last_activity_at) VALUES (?1, ?2, 'new', ?3, ?4, ?5, ?5)",
            )?
            .execute(params![
                t.number.0,
                t.subject,
                t.requester.address,
                t.requester.name,
                now
            ])?;
        }
        TicketChange::Update {
            number,
            status,
            assignee,
        } => {
            tx.prepare_cached(
                "UPDATE tickets SET last_activity_at = ?2, status = coalesce(?3, status),
                   assignee = coalesce(?4, assignee)
                 WHERE number = ?1",
            )?
            .execute(params![number.0, now, status.map(Status::as_str), assignee])?;
        }
    }
    for (person, role) in &plan.participants {
        // A proposed Cc is promoted when it is added for real (`#cc`, the
        // requester's own mail); nobody is ever demoted by a later mail.
        tx.prepare_cached(
            "INSERT INTO participants (ticket_number, address, name, role)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (ticket_number, address) DO UPDATE
               SET role = excluded.role, name = coalesce(excluded.name, participants.name)
               WHERE participants.role = 'proposed' AND excluded.role <> 'proposed'",
        )?
        .execute(params![
            number.0,
            person.address,
            person.name,
            role.as_str()
        ])?;
    }
    for address in &plan.removed_participants {
        tx.prepare_cached(
            "DELETE FROM participants WHERE ticket_number = ?1 AND address = ?2
             AND role IN ('cc', 'proposed')",
        )?
        .execute(params![number.0, address])?;
    }
    let m = &plan.message;
    tx.prepare_cached(
        "INSERT INTO messages (ticket_number, raw_mail_id, message_id, direction, kind,
           from_address, from_name, subject, date, text, quoted, thread_reason,
           classification, created_at)
         VALUES (?1, ?2, ?3, 'in', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        number.0,
        raw_id,
        m.message_id,
        m.kind.as_str(),
        m.from.address,
        m.from.name,
        m.subject,
        m.date,
        m.text,
        m.quoted,
        m.thread_reason,
        m.classification,
        now
    ])?;
    let message_row = tx.last_insert_rowid();
    for a in &plan.attachments {
        tx.prepare_cached(
            "INSERT INTO blobs (sha256, size, bytes) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![a.sha256, a.bytes.len() as i64, a.bytes])?;
        tx.prepare_cached(
            "INSERT INTO attachments (message_id, filename, media_type, content_id, sha256, size)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            message_row,
            a.filename,
            a.media_type,
            a.content_id,
            a.sha256,
            a.bytes.len() as i64
        ])?;
    }
    for link in &plan.links {
        insert_link(tx, link, now)?;
    }
    for mail in &plan.outgoing {
        enqueue(tx, Some(number), mail, now)?;
    }
    if let Some(failed) = &plan.failed_delivery {
        record_bounce(tx, failed)?;
    }
    let queued = plan.outgoing.len();
    Ok(match plan.ticket {
        TicketChange::Create(_) => IngestReport::NewTicket { number, queued },
        TicketChange::Update { .. } => IngestReport::FollowUp { number, queued },
    })
}

/// Marks the reported delivery of ours failed, with the bounce's words.
fn record_bounce(tx: &Connection, failed: &FailedDelivery) -> anyhow::Result<()> {
    let error = format!(
        "bounced{}{}",
        failed
            .status
            .as_deref()
            .map(|s| format!(" with status {s}"))
            .unwrap_or_default(),
        if failed.recipients.is_empty() {
            String::new()
        } else {
            format!(" for {}", failed.recipients.join(", "))
        }
    );
    for id in &failed.message_ids {
        tx.prepare_cached(
            "UPDATE outbox SET status = 'failed', last_error = ?2 WHERE message_id = ?1",
        )?
        .execute(params![id, error])?;
    }
    Ok(())
}

pub(super) fn insert_link(
    tx: &Connection,
    link: &AccessLink,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let (token, scope, ticket, requester) = match link {
        AccessLink::Ticket { token, ticket } => (token, "ticket", Some(ticket.0), None),
        AccessLink::Requester { token, address } => (token, "requester", None, Some(address)),
    };
    tx.prepare_cached(
        "INSERT INTO access_tokens (token_hash, scope, ticket_number, requester, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        crate::tokens::hash_token(token),
        scope,
        ticket,
        requester,
        now
    ])?;
    Ok(())
}

fn insert_raw(
    tx: &Connection,
    dedup_key: &str,
    raw: &RawMail,
    now: DateTime<Utc>,
) -> anyhow::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO raw_mails (dedup_key, sha256, size, bytes, source, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        dedup_key,
        raw.sha256,
        i64::try_from(raw.size).unwrap_or(i64::MAX),
        raw.bytes,
        raw.source.describe(),
        now
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Keeps the raw mail and puts it in the quarantine with its reason.
fn quarantine(
    tx: &Connection,
    dedup_key: &str,
    raw: &RawMail,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let raw_id = insert_raw(tx, dedup_key, raw, now)?;
    tx.prepare_cached(
        "INSERT INTO quarantine (raw_mail_id, reason, created_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![raw_id, reason, now])?;
    Ok(())
}

/// Queues an outgoing mail and records it as an outbound message of its
/// ticket.
pub(super) fn enqueue(
    tx: &Connection,
    ticket: Option<TicketNumber>,
    mail: &OutgoingMail,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    tx.prepare_cached(
        "INSERT INTO outbox (message_id, ticket_number, kind, envelope_from, recipients, raw,
           automatic, status, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8)",
    )?
    .execute(params![
        mail.message_id,
        ticket.map(|t| t.0),
        mail.kind.as_str(),
        mail.envelope_from,
        mail.recipients.join(","),
        mail.raw,
        mail.automatic_reply,
        now
    ])?;
    if let Some(ticket) = ticket {
        tx.prepare_cached(
            "INSERT INTO messages (ticket_number, message_id, direction, kind, from_address,
               subject, date, text, thread_reason, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'sent by postdesk', ?7)",
        )?
        .execute(params![
            ticket.0,
            mail.message_id,
            Direction::Out.as_str(),
            mail.kind.as_str(),
            mail.envelope_from,
            mail.subject,
            now,
            mail.text
        ])?;
    }
    Ok(())
}
