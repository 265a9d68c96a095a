//! The rows one mail's outcome writes, inside the caller's transaction:
//! the raw mail, the ticket change, participants, the message and its
//! attachments, links, outbox rows (and an automatic mail's row for the
//! per-address limit), a bounce's mark on our delivery, or the
//! quarantine (a fault, or ignored machine mail). It decides nothing: what to write comes as a [`Plan`] or an
//! [`Outcome`] from the pure pipeline.

use super::db::{Backend, Tx};
use crate::sql_params as params;
use chrono::{DateTime, Utc};

use super::ingest::{IngestReport, MailSource};
use super::quarantine::Kept;
use crate::domain::{Direction, Status, TicketNumber};
use crate::ingest::Outcome;
use crate::ingest::apply::{AccessLink, FailedDelivery, Plan, TicketChange};
use crate::outbound::compose::OutgoingMail;

/// A mail's bytes as they are kept in `raw_mails`.
pub(super) struct RawMail<'a> {
    pub bytes: &'a [u8],
    pub sha256: &'a str,
    pub source: &'a MailSource,
    /// The mail's size: `bytes.len()`, or the declared full size when
    /// `bytes` is only the header of an oversize mail (so a retry knows).
    pub size: u64,
}

impl<'a> RawMail<'a> {
    pub fn whole(bytes: &'a [u8], sha256: &'a str, source: &'a MailSource) -> RawMail<'a> {
        RawMail {
            bytes,
            sha256,
            source,
            size: bytes.len() as u64,
        }
    }
}

pub(super) fn write_outcome(
    tx: &Tx,
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
            quarantine(tx, &dedup_key, raw, &reason, Kept::Fault, now)?;
            if let Some(notice) = notice {
                enqueue(tx, None, &notice, now)?;
            }
            tracing::warn!("A mail was quarantined: {reason}");
            Ok(IngestReport::Quarantined { reason })
        }
        Outcome::Ignored { reason, dedup_key } => {
            quarantine(tx, &dedup_key, raw, &reason, Kept::Ignored, now)?;
            Ok(IngestReport::Ignored { reason })
        }
        Outcome::Stored(plan) => write_plan(tx, raw, &plan, now),
    }
}

fn write_plan(
    tx: &Tx,
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
                   created_at, last_activity_at, queue)
                 VALUES (?1, ?2, 'new', ?3, ?4, ?5, ?5, ?6)",
            )?
            .execute(params![
                t.number.0,
                t.subject,
                t.requester.address,
                t.requester.name,
                now,
                t.queue
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
    let message_row = tx
        .insert_returning_id(
            "INSERT INTO messages (ticket_number, raw_mail_id, message_id, direction, kind,
           from_address, from_name, subject, date, text, quoted, thread_reason,
           classification, created_at)
         VALUES (?1, ?2, ?3, 'in', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         RETURNING id",
            params![
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
            ],
        )?
        .ok_or_else(|| anyhow::anyhow!("the message row was not inserted"))?;
    for a in &plan.attachments {
        // Kept where they are, in the raw mail above, when a span of it
        // decodes to them; a decoded copy only otherwise.
        let span = a.span;
        if span.is_none() {
            tx.prepare_cached(
                "INSERT INTO blobs (sha256, size, bytes) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?
            .execute(params![a.sha256, a.bytes.len() as i64, a.bytes])?;
        }
        tx.prepare_cached(
            "INSERT INTO attachments (message_id, filename, media_type, content_id, sha256, size,
               raw_offset, raw_length, encoding)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            message_row,
            a.filename,
            a.media_type,
            a.content_id,
            a.sha256,
            a.bytes.len() as i64,
            span.map(|s| i64::try_from(s.offset).unwrap_or(i64::MAX)),
            span.map(|s| i64::try_from(s.length).unwrap_or(i64::MAX)),
            span.map(|s| s.encoding.as_str()),
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
fn record_bounce(tx: &Tx, failed: &FailedDelivery) -> anyhow::Result<()> {
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

pub(super) fn insert_link(tx: &Tx, link: &AccessLink, now: DateTime<Utc>) -> anyhow::Result<()> {
    let (token, scope, ticket, requester) = match link {
        AccessLink::Ticket { token, ticket } => (token, "ticket", Some(ticket.0), None),
        AccessLink::Requester { token, address } => (token, "requester", None, Some(address)),
    };
    tx.prepare_cached(
        "INSERT INTO access_tokens (token_hash, scope, ticket_number, requester, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        crate::tokens::link_key(token),
        scope,
        ticket,
        requester,
        now
    ])?;
    Ok(())
}

/// The mail is stored already: another daemon sharing the database
/// committed it after this one looked (an LMTP re-delivery to a second
/// daemon). The caller rolls the mail back and reports a duplicate.
#[derive(Debug, thiserror::Error)]
#[error("another daemon stored this mail at the same moment")]
pub(super) struct AlreadyStored;

fn insert_raw(tx: &Tx, dedup_key: &str, raw: &RawMail, now: DateTime<Utc>) -> anyhow::Result<i64> {
    // DO NOTHING: a concurrent insert of the same key (another daemon's)
    // waits for that one's commit and then adds no row, never an error
    // that would abort the transaction.
    tx.insert_returning_id(
        "INSERT INTO raw_mails (dedup_key, sha256, size, bytes, source, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (dedup_key) DO NOTHING RETURNING id",
        params![
            dedup_key,
            raw.sha256,
            i64::try_from(raw.size).unwrap_or(i64::MAX),
            raw.bytes,
            raw.source.describe(),
            now
        ],
    )?
    .ok_or_else(|| AlreadyStored.into())
}

/// Keeps the raw mail with its reason on no ticket: in the quarantine
/// (`Kept::Fault`) or apart from it (`Kept::Ignored`).
pub(super) fn quarantine(
    tx: &Tx,
    dedup_key: &str,
    raw: &RawMail,
    reason: &str,
    kind: Kept,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let raw_id = insert_raw(tx, dedup_key, raw, now)?;
    tx.prepare_cached(
        "INSERT INTO quarantine (raw_mail_id, reason, kind, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![raw_id, reason, kind.as_str(), now])?;
    Ok(())
}

/// Queues an outgoing mail and records it as an outbound message of its
/// ticket.
pub(super) fn enqueue(
    tx: &Tx,
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
    if mail.automatic_reply {
        note_automatic_mail(tx, &mail.recipients, now)?;
    }
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

/// How long an automatic mail counts in `recent_automatic_mails`: the
/// limit looks back one hour (`limits.auto_replies_per_hour`); the second
/// hour is margin for a clock that ran ahead and was set right.
const AUTOMATIC_MAIL_KEPT: chrono::Duration = chrono::Duration::hours(2);

/// Rows of expired automatic mails dropped with each new one: more than
/// one, so the table shrinks back after a burst.
const EXPIRED_DROPPED_PER_MAIL: i64 = 4;

/// Notes an automatic mail for the per-address limit
/// ([`super::lookup`]'s `automatic_mails_since`), one row per recipient,
/// and drops a few of the oldest rows past [`AUTOMATIC_MAIL_KEPT`] (by
/// their time, so a row dated ahead by a wrong clock holds back nothing
/// else): the table stays at about the last two hours' automatic mail
/// (see migration V15).
fn note_automatic_mail(tx: &Tx, recipients: &[String], now: DateTime<Utc>) -> anyhow::Result<()> {
    for recipient in recipients {
        tx.prepare_cached(
            "INSERT INTO recent_automatic_mails (recipient, sent_at) VALUES (?1, ?2)",
        )?
        .execute(params![recipient, now])?;
    }
    let drop_expired = match tx.backend() {
        Backend::Sqlite => {
            "DELETE FROM recent_automatic_mails
             WHERE id IN (SELECT id FROM recent_automatic_mails WHERE sent_at < ?2
                          ORDER BY sent_at LIMIT ?1)"
        }
        // Several daemons: a row another one is dropping is left to it, so
        // no batch waits for another's commit.
        Backend::Postgres => {
            "DELETE FROM recent_automatic_mails
             WHERE id IN (SELECT id FROM recent_automatic_mails WHERE sent_at < ?2
                          ORDER BY sent_at LIMIT ?1 FOR UPDATE SKIP LOCKED)"
        }
    };
    tx.prepare_cached(drop_expired)?
        .execute(params![EXPIRED_DROPPED_PER_MAIL, now - AUTOMATIC_MAIL_KEPT])?;
    Ok(())
}
