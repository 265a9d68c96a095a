//! Lifecycle writes outside ingest: a status set from the command line,
//! and resolved tickets closing by themselves after `autoclose_days`. Each
//! change queues the customer's status email in the same transaction.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Connection, params};

use super::Store;
use super::ingest::{enqueue, insert_link};
use super::lookup::ticket_info;
use crate::domain::{Direction, MessageKind, Status, TicketNumber};
use crate::ingest::Pipeline;

impl Store {
    /// Sets a ticket's status (as `#status` would) and queues the status
    /// email. `note` is stored as an internal note. Returns the old status,
    /// or `None` when there is no such ticket.
    pub fn set_status(
        &self,
        pipeline: &Pipeline,
        number: TicketNumber,
        status: Status,
        note: Option<&str>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<Status>> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let old = change_status(&tx, pipeline, number, status, now)?;
        if let (Some(_), Some(text)) = (old, note) {
            let id = format!(
                "note.{}@{}",
                crate::tokens::random_token()?,
                pipeline.domain
            );
            tx.execute(
                "INSERT INTO messages (ticket_number, message_id, direction, kind, from_address,
                   subject, date, text, thread_reason, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'postdesk tickets set-status', '', ?5, ?6,
                   'a note from the command line', ?5)",
                params![
                    number.0,
                    id,
                    Direction::In.as_str(),
                    MessageKind::Note.as_str(),
                    now,
                    text
                ],
            )?;
        }
        tx.commit()?;
        Ok(old)
    }

    /// Closes resolved tickets without a customer reply for `days`; returns
    /// their numbers.
    pub fn autoclose(
        &self,
        pipeline: &Pipeline,
        days: f64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<TicketNumber>> {
        let cutoff = now - Duration::milliseconds((days * 86_400_000.0) as i64);
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let due: Vec<TicketNumber> = {
            let mut stmt = tx.prepare_cached(
                "SELECT number FROM tickets WHERE status = 'resolved' AND last_activity_at < ?1
                 ORDER BY number LIMIT 500",
            )?;
            let rows = stmt.query_map([cutoff], |r| r.get(0).map(TicketNumber))?;
            rows.collect::<Result<_, _>>()?
        };
        for number in &due {
            change_status(&tx, pipeline, *number, Status::Closed, now)?;
        }
        tx.commit()?;
        Ok(due)
    }
}

/// Moves one ticket to `status` and queues the status email, unless it is
/// already there.
fn change_status(
    tx: &Connection,
    pipeline: &Pipeline,
    number: TicketNumber,
    status: Status,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Status>> {
    let Some(info) = ticket_info(tx, number)? else {
        return Ok(None);
    };
    if info.status == status {
        return Ok(Some(info.status));
    }
    tx.execute(
        "UPDATE tickets SET status = ?2, last_activity_at = ?3 WHERE number = ?1",
        params![number.0, status.as_str(), now],
    )?;
    let (mail, links) = pipeline.status_mail(&info, status, now)?;
    for link in &links {
        insert_link(tx, link, now)?;
    }
    enqueue(tx, Some(number), &mail, now)?;
    Ok(Some(info.status))
}
