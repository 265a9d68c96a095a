//! The pipeline's view of the store: the facts threading and apply read
//! (seen Message-IDs, tickets, participants, rate-limit counts), inside the
//! caller's write transaction so that facts and writes agree. Reads only.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::{Status, TicketNumber};
use crate::ingest::apply::{IngestLookup, TicketInfo};
use crate::ingest::parse::Mailbox;
use crate::ingest::thread::ThreadLookup;

/// The pipeline's view of the store, inside the write transaction.
pub(super) struct TxLookup<'a>(pub(super) &'a Connection);

impl ThreadLookup for TxLookup<'_> {
    fn is_seen(&self, dedup_key: &str) -> anyhow::Result<bool> {
        let found: Option<i64> = self
            .0
            .prepare_cached("SELECT 1 FROM raw_mails WHERE dedup_key = ?1")?
            .query_row([dedup_key], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    fn ticket_of_message(&self, message_id: &str) -> anyhow::Result<Option<TicketNumber>> {
        Ok(self
            .0
            .prepare_cached("SELECT ticket_number FROM messages WHERE message_id = ?1")?
            .query_row([message_id], |r| r.get(0).map(TicketNumber))
            .optional()?)
    }

    fn participants(&self, ticket: TicketNumber) -> anyhow::Result<Option<Vec<String>>> {
        let exists: Option<i64> = self
            .0
            .prepare_cached("SELECT 1 FROM tickets WHERE number = ?1")?
            .query_row([ticket.0], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            return Ok(None);
        }
        let mut stmt = self
            .0
            .prepare_cached("SELECT address FROM participants WHERE ticket_number = ?1")?;
        let rows = stmt.query_map([ticket.0], |r| r.get(0))?;
        Ok(Some(rows.collect::<Result<Vec<String>, _>>()?))
    }
}

impl IngestLookup for TxLookup<'_> {
    fn next_ticket_number(&self) -> anyhow::Result<TicketNumber> {
        let max: i64 = self
            .0
            .prepare_cached("SELECT coalesce(max(number), 0) FROM tickets")?
            .query_row([], |r| r.get(0))?;
        Ok(TicketNumber(max + 1))
    }

    fn ticket_info(&self, ticket: TicketNumber) -> anyhow::Result<Option<TicketInfo>> {
        ticket_info(self.0, ticket)
    }

    fn automatic_mails_since(&self, address: &str, since: DateTime<Utc>) -> anyhow::Result<u32> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT count(*) FROM outbox WHERE recipients = ?1 AND automatic = 1
             AND created_at >= ?2",
            )?
            .query_row(params![address, since], |r| r.get(0))?)
    }
}

/// A ticket as follow-ups, agents' replies and status mails see it.
pub(super) fn ticket_info(
    c: &Connection,
    ticket: TicketNumber,
) -> anyhow::Result<Option<TicketInfo>> {
    let row = c
        .prepare_cached(
            "SELECT subject, status, requester, requester_name, last_activity_at
             FROM tickets WHERE number = ?1",
        )?
        .query_row([ticket.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, DateTime<Utc>>(4)?,
            ))
        })
        .optional()?;
    let Some((subject, status, requester, requester_name, last_activity_at)) = row else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(
        "SELECT address, name FROM participants WHERE ticket_number = ?1 AND role = 'cc'
         ORDER BY address",
    )?;
    let cc = stmt
        .query_map([ticket.0], |r| {
            Ok(Mailbox::new(
                &r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?.as_deref(),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = c.prepare_cached(
        "SELECT message_id FROM messages WHERE ticket_number = ?1 AND kind = 'customer'
         AND message_id NOT LIKE 'sha256:%' ORDER BY id",
    )?;
    let customer_message_ids = stmt
        .query_map([ticket.0], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Some(TicketInfo {
        number: ticket,
        subject,
        status: Status::parse(&status).unwrap_or(Status::Open),
        requester: Mailbox::new(&requester, requester_name.as_deref()),
        cc,
        customer_message_ids,
        last_activity_at,
    }))
}
