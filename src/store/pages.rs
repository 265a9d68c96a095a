//! Page reads: what the status page needs beyond `ticket_page` and the
//! ticket lists: a ticket opened from a requester's list, attachment bytes
//! checked against the link that asks for them, one ticket in full for
//! agents, the counts behind `/metrics` and the outbox backlog behind
//! `/healthz`.
//! Reads only, on reader connections. A customer-facing read must never
//! return another ticket's data, nor a message `customer_sees` refuses
//! (a note, automatic mail, a stranger's mail threaded onto the ticket).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::ticket_lists::{counts_by_status, requester_of};
use super::tickets::{SENDER_TAKES_PART, customer_sees, detail};
use super::{Store, TicketDetail};
use crate::domain::{Status, TicketNumber};

/// One ticket as agents see it: every message, plus who holds it.
#[derive(Debug, Clone)]
pub struct AgentTicket {
    pub detail: TicketDetail,
    pub assignee: Option<String>,
}

/// An attachment's bytes, ready to download.
#[derive(Debug, Clone)]
pub struct AttachmentFile {
    pub filename: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// The counts behind `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    /// Every mail stored, quarantined and ignored ones included.
    pub mails_ingested: i64,
    /// Faults only: mail that could not be processed.
    pub mails_quarantined: i64,
    /// Machine mail that answers no ticket, kept apart.
    pub mails_ignored: i64,
    /// Every status, zero where there is none.
    pub tickets_by_status: BTreeMap<Status, i64>,
    pub outbox_pending: i64,
    pub outbox_failed: i64,
}

impl Store {
    /// A ticket opened from a requester's list: only what `customer_sees`,
    /// and only if the ticket is that requester's.
    pub fn requester_ticket(
        &self,
        token: &str,
        number: TicketNumber,
    ) -> anyhow::Result<Option<TicketDetail>> {
        self.read(|c| {
            if !owns_ticket(c, token, number)? {
                return Ok(None);
            }
            detail(c, number, true)
        })
    }

    /// An attachment through a ticket link: only one on a message of that
    /// link's ticket that the customer's page shows.
    pub fn ticket_attachment(
        &self,
        token: &str,
        attachment: i64,
    ) -> anyhow::Result<Option<AttachmentFile>> {
        self.read(|c| {
            let number: Option<i64> = c
                .query_row(
                    "SELECT ticket_number FROM access_tokens
                     WHERE token_hash = ?1 AND scope = 'ticket' AND revoked_at IS NULL",
                    [crate::tokens::hash_token(token)],
                    |r| r.get(0),
                )
                .optional()?;
            match number {
                Some(n) => attachment_of(c, TicketNumber(n), attachment, true),
                None => Ok(None),
            }
        })
    }

    /// An attachment through a requester link: only one on a message the
    /// customer's page shows, of a ticket of that requester.
    pub fn requester_attachment(
        &self,
        token: &str,
        number: TicketNumber,
        attachment: i64,
    ) -> anyhow::Result<Option<AttachmentFile>> {
        self.read(|c| {
            if !owns_ticket(c, token, number)? {
                return Ok(None);
            }
            attachment_of(c, number, attachment, true)
        })
    }

    /// One ticket in full for agents: notes, auto-replies, bounces and our
    /// own mails included.
    pub fn agent_ticket(&self, number: TicketNumber) -> anyhow::Result<Option<AgentTicket>> {
        let Some(detail) = self.ticket_detail(number)? else {
            return Ok(None);
        };
        let assignee = self.read(|c| {
            Ok(c.query_row(
                "SELECT assignee FROM tickets WHERE number = ?1",
                [number.0],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
        })?;
        Ok(Some(AgentTicket { detail, assignee }))
    }

    /// Any attachment of a ticket, for agents.
    pub fn agent_attachment(
        &self,
        number: TicketNumber,
        attachment: i64,
    ) -> anyhow::Result<Option<AttachmentFile>> {
        self.read(|c| attachment_of(c, number, attachment, false))
    }

    /// Outgoing mails not yet sent (or being sent), and when the oldest of
    /// them was queued: for `/healthz`. Failed ones are not waiting.
    pub fn outbox_backlog(&self) -> anyhow::Result<(i64, Option<DateTime<Utc>>)> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT count(*), min(created_at) FROM outbox
                 WHERE status IN ('pending', 'sending')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
    }

    /// Counts for `/metrics`, in one read.
    pub fn store_metrics(&self) -> anyhow::Result<StoreMetrics> {
        self.read(|c| {
            let mails_ingested = c.query_row("SELECT count(*) FROM raw_mails", [], |r| r.get(0))?;
            let (mails_quarantined, mails_ignored) = c.query_row(
                "SELECT count(*) FILTER (WHERE kind = 'fault'),
                        count(*) FILTER (WHERE kind = 'ignored') FROM quarantine",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (outbox_pending, outbox_failed) = c.query_row(
                "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')),
                        count(*) FILTER (WHERE status = 'failed') FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(StoreMetrics {
                mails_ingested,
                mails_quarantined,
                mails_ignored,
                tickets_by_status: counts_by_status(c, None)?,
                outbox_pending,
                outbox_failed,
            })
        })
    }
}

/// Whether a live requester token names the requester of ticket `number`.
fn owns_ticket(c: &Connection, token: &str, number: TicketNumber) -> anyhow::Result<bool> {
    let Some(requester) = requester_of(c, token)? else {
        return Ok(false);
    };
    let owner: Option<String> = c
        .query_row(
            "SELECT requester FROM tickets WHERE number = ?1",
            [number.0],
            |r| r.get(0),
        )
        .optional()?;
    Ok(owner.is_some_and(|owner| owner == requester))
}

/// An attachment of ticket `number`; with `customer_view`, only one on a
/// message the customer's page shows.
fn attachment_of(
    c: &Connection,
    number: TicketNumber,
    attachment: i64,
    customer_view: bool,
) -> anyhow::Result<Option<AttachmentFile>> {
    let sql = format!(
        "SELECT a.filename, a.media_type, m.kind, {SENDER_TAKES_PART}, b.bytes
         FROM attachments a
         JOIN messages m ON m.id = a.message_id
         JOIN blobs b ON b.sha256 = a.sha256
         WHERE a.id = ?1 AND m.ticket_number = ?2"
    );
    let found = c
        .query_row(&sql, params![attachment, number.0], |r| {
            let kind: String = r.get(2)?;
            let shown = customer_sees(&kind, r.get(3)?);
            let file = AttachmentFile {
                filename: r.get(0)?,
                media_type: r.get(1)?,
                bytes: r.get(4)?,
            };
            Ok((file, shown))
        })
        .optional()?;
    Ok(found
        .filter(|(_, shown)| !customer_view || *shown)
        .map(|(file, _)| file))
}
