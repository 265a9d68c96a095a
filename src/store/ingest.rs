//! Store side of ingest: runs the pure pipeline inside one write
//! transaction (so its facts and its writes agree) and writes the outcome:
//! the raw mail, the ticket change, the message, attachments, outbox rows,
//! the quarantine and the IMAP checkpoint, all or nothing. A panic or an
//! error in one mail is contained to that mail: it goes to the quarantine.

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::Store;
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
    /// Ingests one mail (from the MTA pipe or a test) in one transaction.
    pub fn ingest_mail(
        &self,
        pipeline: &Pipeline,
        raw: &[u8],
        source: &MailSource,
        now: DateTime<Utc>,
    ) -> anyhow::Result<IngestReport> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let report = ingest_one(&tx, pipeline, raw, source, now)?;
        tx.commit()?;
        Ok(report)
    }

    /// Ingests a batch fetched from IMAP and moves the checkpoint past it,
    /// all in one transaction. While the writer applies one mail, a second
    /// thread prepares the next ones (parse, classify, strip: the part that
    /// needs no store), so the two cores share the work.
    pub fn ingest_batch(
        &self,
        pipeline: &Pipeline,
        mailbox: &str,
        uidvalidity: u32,
        mails: &[FetchedMail],
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<IngestReport>> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut reports = Vec::with_capacity(mails.len());
        std::thread::scope(|scope| -> anyhow::Result<()> {
            // Bounded: at most a few parsed mails wait in memory.
            let (ready, prepared) = std::sync::mpsc::sync_channel(PREPARED_AHEAD);
            scope.spawn(move || {
                for mail in mails {
                    if ready.send(prepare_contained(pipeline, &mail.raw)).is_err() {
                        break; // the writer gave up on this batch
                    }
                }
            });
            for mail in mails {
                let source = MailSource::Imap {
                    mailbox: mailbox.to_string(),
                    uidvalidity,
                    uid: mail.uid,
                };
                let prepared = prepared
                    .recv()
                    .map_err(|_| anyhow::anyhow!("the preparing thread ended early"))?;
                reports.push(ingest_prepared(
                    &tx, pipeline, &mail.raw, prepared, &source, now,
                )?);
            }
            Ok(())
        })?;
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

/// How many prepared mails may wait for the writer.
const PREPARED_AHEAD: usize = 4;

/// [`Pipeline::prepare`], with a panic kept as the mail's failure.
fn prepare_contained(pipeline: &Pipeline, raw: &[u8]) -> std::thread::Result<Prepared> {
    catch_unwind(AssertUnwindSafe(|| pipeline.prepare(raw)))
}

/// One mail inside the caller's transaction, under a savepoint: whatever
/// goes wrong in processing or writing it ends in the quarantine.
pub(super) fn ingest_one(
    tx: &Connection,
    pipeline: &Pipeline,
    raw: &[u8],
    source: &MailSource,
    now: DateTime<Utc>,
) -> anyhow::Result<IngestReport> {
    let prepared = prepare_contained(pipeline, raw);
    ingest_prepared(tx, pipeline, raw, prepared, source, now)
}

/// [`ingest_one`] for a mail already prepared (or whose preparing panicked).
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
    let raw = RawMail {
        bytes: raw,
        sha256: &sha256,
        source,
    };
    tx.execute_batch("SAVEPOINT one_mail")?;
    let attempt = prepared.and_then(|prepared| {
        catch_unwind(AssertUnwindSafe(|| {
            let outcome = pipeline.decide(raw.bytes, prepared, &TxLookup(tx), now)?;
            write_outcome(tx, &raw, outcome, now)
        }))
    });
    let failure = match attempt {
        Ok(Ok(report)) => {
            tx.execute_batch("RELEASE one_mail")?;
            return Ok(report);
        }
        Ok(Err(err)) => format!("processing failed: {err:#}"),
        Err(panic) => format!("processing panicked: {}", panic_message(panic.as_ref())),
    };
    tx.execute_batch("ROLLBACK TO one_mail; RELEASE one_mail")?;
    tracing::error!(
        "A mail from {} was quarantined: {failure}",
        source.describe()
    );
    let key = content_key(&sha256);
    if TxLookup(tx).is_seen(&key)? {
        return Ok(IngestReport::Duplicate);
    }
    quarantine(tx, &key, &raw, &failure, now)?;
    Ok(IngestReport::Quarantined { reason: failure })
}

/// A mail's bytes as they are kept in `raw_mails`.
struct RawMail<'a> {
    bytes: &'a [u8],
    sha256: &'a str,
    source: &'a MailSource,
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
        tx.prepare_cached(
            "INSERT INTO participants (ticket_number, address, name, role)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            number.0,
            person.address,
            person.name,
            role.as_str()
        ])?;
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
        raw.bytes.len() as i64,
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
