//! Ticket read models: lists, one ticket in full, the customer's page by
//! token, `explain`, the quarantine. Reads only, on reader connections.
//! What a customer's page may show is decided here, once
//! (`customer_sees`), for every customer-facing read.

use super::db::{Backend, OptionalExtension, Tx};
use crate::sql_params as params;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Store;
use super::links::live_link;
use super::ticket_lists::stored_time;
use crate::domain::{MessageKind, Status, TicketNumber};

/// One row of `tickets list`.
#[derive(Debug, Clone, Serialize)]
pub struct TicketSummary {
    pub number: TicketNumber,
    pub subject: String,
    pub status: Status,
    pub requester: String,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub message_count: i64,
    /// The queue (support address) the ticket belongs to.
    pub queue: String,
}

/// One message as shown by `tickets show` and the page.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub message_id: String,
    pub from: String,
    pub from_name: Option<String>,
    pub direction: String,
    pub kind: String,
    pub date: DateTime<Utc>,
    pub text: String,
    pub quoted: String,
    pub thread_reason: String,
    pub attachments: Vec<AttachmentView>,
    /// For outbound mail: pending, sending, sent or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Whether the customer's pages show it (`customer_sees`).
    pub shown_to_customer: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttachmentView {
    pub id: i64,
    pub filename: String,
    pub media_type: String,
    pub size: i64,
    pub sha256: String,
}

/// A ticket with its messages.
#[derive(Debug, Clone, Serialize)]
pub struct TicketDetail {
    #[serde(flatten)]
    pub summary: TicketSummary,
    pub participants: Vec<String>,
    /// Cc's a mail named that were not added: no recipients, shown to the
    /// agents, who add one with `#cc`.
    pub proposed_cc: Vec<String>,
    pub messages: Vec<MessageView>,
}

/// Why a message went where it went.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub message_id: String,
    pub ticket: TicketNumber,
    pub kind: String,
    pub direction: String,
    pub reason: String,
    pub classification: String,
}

/// One quarantined mail.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantineItem {
    pub id: i64,
    pub dedup_key: String,
    pub size: i64,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// SQL over a message row `m`: whether its sender takes part in its
/// ticket, as the requester or a `cc` participant (a `proposed` Cc does
/// not). Anyone who learned one of the ticket's Message-IDs can thread a
/// mail onto it; only these senders' mail reaches the customer's page.
pub(super) const SENDER_TAKES_PART: &str = "(lower(m.from_address) = (SELECT lower(tr.requester)
        FROM tickets tr WHERE tr.number = m.ticket_number)
    OR EXISTS (SELECT 1 FROM participants pc WHERE pc.ticket_number = m.ticket_number
        AND pc.role = 'cc' AND lower(pc.address) = lower(m.from_address)))";

/// Whether a customer's page shows a message of `kind`: an agent's reply,
/// or a customer mail whose sender takes part in the ticket (see
/// `SENDER_TAKES_PART`); never notes, automatic mail or our own copies.
/// Every customer-facing read, attachments included, goes through this.
pub(super) fn customer_sees(kind: &str, sender_takes_part: bool) -> bool {
    match MessageKind::parse(kind) {
        Some(MessageKind::Customer) => sender_takes_part,
        Some(other) => other.is_public(),
        None => false,
    }
}

const SUMMARY_COLUMNS: &str = "t.number, t.subject, t.status, t.requester, t.created_at,
    t.last_activity_at, (SELECT count(*) FROM messages m WHERE m.ticket_number = t.number),
    t.queue";

fn summary_row(r: &super::db::Row) -> anyhow::Result<TicketSummary> {
    let status: String = r.get(2)?;
    Ok(TicketSummary {
        number: TicketNumber(r.get(0)?),
        subject: r.get(1)?,
        status: Status::parse(&status).unwrap_or(Status::Open),
        requester: r.get(3)?,
        created_at: stored_time(r, 4)?,
        last_activity_at: stored_time(r, 5)?,
        message_count: r.get(6)?,
        queue: r.get(7)?,
    })
}

impl Store {
    /// Every ticket, newest activity first, optionally of one status.
    pub fn list_tickets(&self, status: Option<Status>) -> anyhow::Result<Vec<TicketSummary>> {
        self.list_tickets_in(status, None)
    }

    /// [`Store::list_tickets`], of one queue only where `queue` is given.
    pub fn list_tickets_in(
        &self,
        status: Option<Status>,
        queue: Option<&str>,
    ) -> anyhow::Result<Vec<TicketSummary>> {
        self.read(|c| {
            let sql = format!(
                "SELECT {SUMMARY_COLUMNS} FROM tickets t
                 WHERE (CAST(?1 AS TEXT) IS NULL OR t.status = ?1)
                   AND (CAST(?2 AS TEXT) IS NULL OR t.queue = ?2)
                 ORDER BY t.last_activity_at DESC, t.number DESC"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![status.map(Status::as_str), queue], summary_row)?;
            rows.collect::<Result<Vec<_>, _>>()
        })
    }

    /// One ticket in full (agents' view: every message).
    pub fn ticket_detail(&self, number: TicketNumber) -> anyhow::Result<Option<TicketDetail>> {
        self.read(|c| detail(c, number, false))
    }

    /// The customer's view of the ticket a link token opens: only what
    /// `customer_sees`. `None` for an unknown or revoked token.
    pub fn ticket_page(&self, token: &str) -> anyhow::Result<Option<TicketDetail>> {
        let key = crate::tokens::link_key(token);
        self.read(|c| {
            snapshot(c, || {
                // The token and its ticket in one read: on PostgreSQL each
                // statement is a round trip to the server.
                let sql = format!(
                    "SELECT {SUMMARY_COLUMNS} FROM access_tokens k
                     JOIN tickets t ON t.number = k.ticket_number WHERE {}",
                    live_link!("ticket")
                );
                let summary = c.prepare_cached(&sql)?.query_row([&key], summary_row);
                match summary.optional()? {
                    Some(summary) => detail_of(c, summary, true).map(Some),
                    None => Ok(None),
                }
            })
        })
    }

    /// The ticket a live ticket link opens, and nothing else about it: one
    /// indexed read (the page benchmark's floor reads this alone).
    pub fn ticket_of_link(&self, token: &str) -> anyhow::Result<Option<TicketNumber>> {
        let key = crate::tokens::link_key(token);
        self.read(|c| ticket_of_link(c, &key))
    }

    /// Why the message with this Message-ID went where it went.
    pub fn explain(&self, message_id: &str) -> anyhow::Result<Option<Explanation>> {
        let id = message_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        self.read(|c| {
            c.query_row(
                concat!(
                    "SELECT message_id, ticket_number, kind, direction, thread_reason,
                       classification
                     FROM messages WHERE id = ",
                    super::lookup::message_with_id!()
                ),
                [id],
                |r| {
                    Ok(Explanation {
                        message_id: r.get(0)?,
                        ticket: TicketNumber(r.get(1)?),
                        kind: r.get(2)?,
                        direction: r.get(3)?,
                        reason: r.get(4)?,
                        classification: r.get(5)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Every quarantined mail (the faults; ignored machine mail is
    /// `kept_list(Kept::Ignored)`), newest first.
    pub fn quarantine_list(&self) -> anyhow::Result<Vec<QuarantineItem>> {
        self.kept_list(super::Kept::Fault)
    }
}

/// Runs `read`'s statements in one read transaction on SQLite: one
/// shared lock and one look at the WAL for them all, instead of one per
/// statement (and one consistent snapshot). PostgreSQL runs them as they
/// come: there a `BEGIN` and `COMMIT` would be two more round trips.
pub(super) fn snapshot<T>(c: &Tx, read: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    if c.backend() != Backend::Sqlite {
        return read();
    }
    c.execute("BEGIN", params![])?;
    let result = read();
    // A read transaction left open would pin this pooled connection to an
    // old snapshot: it ends whatever `read` returned.
    let ended = c.execute(
        if result.is_ok() { "COMMIT" } else { "ROLLBACK" },
        params![],
    );
    if ended.is_err() {
        let _ = c.execute("ROLLBACK", params![]);
    }
    let value = result?;
    ended?;
    Ok(value)
}

/// The ticket of a live ticket-scoped token, by its stored key (`tokens::link_key`).
pub(super) fn ticket_of_link(c: &Tx, key: &str) -> anyhow::Result<Option<TicketNumber>> {
    // Cached: preparing these statements anew was ~8% of the page.
    let number: Option<i64> = c
        .prepare_cached(concat!(
            "SELECT k.ticket_number FROM access_tokens k WHERE ",
            live_link!("ticket")
        ))?
        .query_row([key], |r| r.get(0))
        .optional()?;
    Ok(number.map(TicketNumber))
}

/// Ticket `number` with its people and messages; with `customer_view`,
/// only the messages the customer's pages show (and no delivery states:
/// those are for agents).
pub(super) fn detail(
    c: &Tx,
    number: TicketNumber,
    customer_view: bool,
) -> anyhow::Result<Option<TicketDetail>> {
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM tickets t WHERE t.number = ?1");
    let summary = c.prepare_cached(&sql)?.query_row([number.0], summary_row);
    match summary.optional()? {
        Some(summary) => detail_of(c, summary, customer_view).map(Some),
        None => Ok(None),
    }
}

/// [`detail`] of a ticket whose summary is read.
fn detail_of(c: &Tx, summary: TicketSummary, customer_view: bool) -> anyhow::Result<TicketDetail> {
    let number = summary.number;
    let mut stmt = c.prepare_cached(
        "SELECT address, role = 'proposed' FROM participants WHERE ticket_number = ?1
         ORDER BY role DESC, address",
    )?;
    let people = stmt
        .query_map([number.0], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let (proposed, taking_part): (Vec<_>, Vec<_>) = people.into_iter().partition(|p| p.1);
    let participants = taking_part.into_iter().map(|p| p.0).collect();
    let proposed_cc = proposed.into_iter().map(|p| p.0).collect();
    let mut messages = messages(c, &summary, customer_view)?;
    if customer_view {
        messages.retain(|m| m.shown_to_customer);
    }
    Ok(TicketDetail {
        summary,
        participants,
        proposed_cc,
        messages,
    })
}

/// The same test as [`SENDER_TAKES_PART`], over the messages of one
/// ticket whose requester is `?2`: the requester and the `cc` list are
/// read once for all of them, not once per message (two correlated
/// sub-queries per message were ~8 of the ~20 µs of the page's read). `lower` stays SQL's, so both backends compare as
/// they always did.
const SENDER_OF_TICKET_TAKES_PART: &str = "(lower(m.from_address) = lower(CAST(?2 AS TEXT))
    OR lower(m.from_address) IN (SELECT lower(pc.address) FROM participants pc
        WHERE pc.ticket_number = ?1 AND pc.role = 'cc'))";

/// The messages of a ticket, oldest first, with their attachments; the
/// customer's view does not look up delivery states.
fn messages(
    c: &Tx,
    ticket: &TicketSummary,
    customer_view: bool,
) -> anyhow::Result<Vec<MessageView>> {
    let (delivery, outbox) = if customer_view {
        ("NULL", "")
    } else {
        (
            "o.status",
            // Our own mails' delivery; a received mail that carries one of
            // their IDs (V16 stores it) shows none.
            "LEFT JOIN outbox o ON o.message_id = m.message_id AND m.raw_mail_id IS NULL",
        )
    };
    let sql = format!(
        "SELECT m.id, m.message_id, m.from_address, m.from_name, m.direction, m.kind, m.date,
                m.text, m.quoted, m.thread_reason, {delivery}, {SENDER_OF_TICKET_TAKES_PART},
                EXISTS (SELECT 1 FROM attachments a WHERE a.message_id = m.id)
         FROM messages m {outbox}
         WHERE m.ticket_number = ?1 ORDER BY m.id"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![ticket.number.0, ticket.requester], |r| {
        let kind: String = r.get(5)?;
        let shown_to_customer = customer_sees(&kind, r.get(11)?);
        Ok((
            (r.get::<_, i64>(0)?, r.get::<_, bool>(12)?),
            MessageView {
                message_id: r.get(1)?,
                from: r.get(2)?,
                from_name: r.get(3)?,
                direction: r.get(4)?,
                kind,
                date: stored_time(r, 6)?,
                text: r.get(7)?,
                quoted: r.get(8)?,
                thread_reason: r.get(9)?,
                attachments: Vec::new(),
                delivery: r.get::<_, Option<String>>(10)?,
                shown_to_customer,
            },
        ))
    })?;
    let mut out = rows.collect::<Result<Vec<_>, _>>()?;
    // Most tickets have none: then the read of them (one more round trip
    // on PostgreSQL) is skipped.
    if !out.iter().any(|((_, has_attachments), _)| *has_attachments) {
        return Ok(out.into_iter().map(|(_, view)| view).collect());
    }
    let mut attachments = attachments(c, ticket.number)?.into_iter().peekable();
    // Both are in message row order: hand each message its own.
    for ((row_id, _), view) in &mut out {
        while let Some((of, a)) = attachments.next_if(|(of, _)| of <= row_id) {
            if of == *row_id {
                view.attachments.push(a);
            }
        }
    }
    Ok(out.into_iter().map(|(_, view)| view).collect())
}

/// Every attachment of a ticket's messages, by message row then id, in
/// one read, not one per message.
fn attachments(c: &Tx, number: TicketNumber) -> anyhow::Result<Vec<(i64, AttachmentView)>> {
    let mut stmt = c.prepare_cached(
        "SELECT a.message_id, a.id, a.filename, a.media_type, a.size, a.sha256
         FROM messages m JOIN attachments a ON a.message_id = m.id
         WHERE m.ticket_number = ?1 ORDER BY a.message_id, a.id",
    )?;
    let rows = stmt.query_map(params![number.0], |r| {
        Ok((
            r.get(0)?,
            AttachmentView {
                id: r.get(1)?,
                filename: r.get(2)?,
                media_type: r.get(3)?,
                size: r.get(4)?,
                sha256: r.get(5)?,
            },
        ))
    })?;
    rows.collect::<Result<Vec<_>, _>>()
}

/// One outgoing mail as the outbox keeps it: where it went and how its
/// delivery went (a bounce tied back to it marks it failed, with why).
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub message_id: String,
    pub ticket: Option<TicketNumber>,
    pub kind: String,
    pub recipients: Vec<String>,
    /// Counts toward the per-address limit on automatic mail.
    pub automatic: bool,
    /// pending, sending, sent or failed.
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Every outgoing mail, oldest first.
    pub fn deliveries(&self) -> anyhow::Result<Vec<DeliveryView>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT message_id, ticket_number, kind, recipients, automatic, status, attempts,
                        last_error, created_at
                 FROM outbox ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                let recipients: String = r.get(3)?;
                Ok(DeliveryView {
                    message_id: r.get(0)?,
                    ticket: r.get::<_, Option<i64>>(1)?.map(TicketNumber),
                    kind: r.get(2)?,
                    recipients: recipients.split(',').map(str::to_string).collect(),
                    automatic: r.get(4)?,
                    status: r.get(5)?,
                    attempts: r.get(6)?,
                    last_error: r.get(7)?,
                    created_at: r.get(8)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_agents_replies_and_mail_of_people_taking_part_reach_the_customer() {
        assert!(customer_sees("agent", false));
        assert!(customer_sees("customer", true));
        assert!(!customer_sees("customer", false), "a stranger's mail");
        for kind in MessageKind::ALL
            .map(MessageKind::as_str)
            .into_iter()
            .chain(["bogus"])
        {
            if !["agent", "customer"].contains(&kind) {
                assert!(!customer_sees(kind, true), "{kind}");
            }
        }
    }
}

#[cfg(test)]
#[path = "page_reads_tests.rs"]
mod page_reads_tests;
