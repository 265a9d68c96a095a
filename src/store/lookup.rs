//! The pipeline's view of the store: the facts threading and apply read
//! (seen Message-IDs, tickets, participants, rate-limit counts), inside the
//! caller's write transaction so that facts and writes agree. Reads only.
//! Addresses read back are checked again: a row an older version stored
//! without checking is skipped with a warning, never an error that stops
//! a mail (issue 17).

use std::cell::RefCell;

use super::db::{Backend, OptionalExtension, Tx};
use crate::sql_params as params;
use chrono::{DateTime, Utc};

use crate::domain::{Status, TicketNumber};
use crate::ingest::apply::{IngestLookup, TicketInfo};
use crate::ingest::parse::Mailbox;
use crate::ingest::thread::ThreadLookup;

/// The row of the message whose Message-ID is `?1`, as a scalar subquery.
/// Since V16 only one unique index holds each ID: ours (and notes, which
/// have no raw mail) their own, a received message its raw mail's dedup
/// key. Ours first, should a received mail carry the ID of one of ours
/// (`coalesce` says so; a `UNION ALL … LIMIT 1` would leave it to the plan).
macro_rules! message_with_id {
    () => {
        "coalesce(
           (SELECT id FROM messages WHERE message_id = ?1 AND raw_mail_id IS NULL),
           (SELECT m.id FROM raw_mails r JOIN messages m ON m.raw_mail_id = r.id
             WHERE r.dedup_key = ?1))"
    };
}
pub(super) use message_with_id;

/// The pipeline's view of the store, inside the write transaction, for
/// one mail's decision. The ticket it reads whole is kept for the rest of
/// that decision: threading asks for its queue, the follow-up for the
/// ticket, composing for the people to tell, and nothing is written
/// before the decision is made (on PostgreSQL every read is a round
/// trip). Make a new one for each decision.
pub(super) struct TxLookup<'a> {
    tx: &'a Tx<'a>,
    ticket: RefCell<Option<(TicketNumber, Option<TicketInfo>)>>,
}

impl<'a> TxLookup<'a> {
    pub(super) fn new(tx: &'a Tx<'a>) -> TxLookup<'a> {
        TxLookup {
            tx,
            ticket: RefCell::new(None),
        }
    }
}

impl ThreadLookup for TxLookup<'_> {
    fn is_seen(&self, dedup_key: &str) -> anyhow::Result<bool> {
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT 1 FROM raw_mails WHERE dedup_key = ?1")?
            .query_row([dedup_key], |r| r.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    fn ticket_of_message(&self, message_id: &str) -> anyhow::Result<Option<TicketNumber>> {
        self.tx
            .prepare_cached(concat!(
                "SELECT ticket_number FROM messages WHERE id = ",
                message_with_id!()
            ))?
            .query_row([message_id], |r| r.get(0).map(TicketNumber))
            .optional()
    }

    fn participants(&self, ticket: TicketNumber) -> anyhow::Result<Option<Vec<String>>> {
        let exists: Option<i64> = self
            .tx
            .prepare_cached("SELECT 1 FROM tickets WHERE number = ?1")?
            .query_row([ticket.0], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            return Ok(None);
        }
        // A proposed Cc does not take part: it cannot thread by the tag.
        let mut stmt = self.tx.prepare_cached(
            "SELECT address FROM participants WHERE ticket_number = ?1 AND role <> 'proposed'",
        )?;
        let rows = stmt.query_map([ticket.0], |r| r.get(0))?;
        Ok(Some(rows.collect::<Result<Vec<String>, _>>()?))
    }
}

impl IngestLookup for TxLookup<'_> {
    /// SQLite: one past the highest, under its single writer. PostgreSQL:
    /// the `ticket_numbers` sequence, as several daemons write at once (a
    /// number taken by a mail that is then rolled back stays unused).
    fn next_ticket_number(&self) -> anyhow::Result<TicketNumber> {
        if self.tx.backend() == Backend::Postgres {
            let next: i64 = self
                .tx
                .query_row("SELECT nextval('ticket_numbers')", [], |r| r.get(0))?;
            return Ok(TicketNumber(next));
        }
        let max: i64 = self
            .tx
            .prepare_cached("SELECT coalesce(max(number), 0) FROM tickets")?
            .query_row([], |r| r.get(0))?;
        Ok(TicketNumber(max + 1))
    }

    fn ticket_info(&self, ticket: TicketNumber) -> anyhow::Result<Option<TicketInfo>> {
        if let Some((number, info)) = &*self.ticket.borrow()
            && *number == ticket
        {
            return Ok(info.clone());
        }
        let info = ticket_info(self.tx, ticket)?;
        *self.ticket.borrow_mut() = Some((ticket, info.clone()));
        Ok(info)
    }

    fn automatic_mails_since(&self, address: &str, since: DateTime<Utc>) -> anyhow::Result<u32> {
        self.tx
            .prepare_cached(
                "SELECT count(*) FROM recent_automatic_mails
                 WHERE recipient = ?1 AND sent_at >= ?2",
            )?
            .query_row(params![address, since], |r| r.get(0))
    }
}

/// A ticket as follow-ups, agents' replies and status mails see it.
pub(super) fn ticket_info(c: &Tx, ticket: TicketNumber) -> anyhow::Result<Option<TicketInfo>> {
    let row = c
        .prepare_cached(
            "SELECT subject, status, requester, requester_name, last_activity_at, queue
             FROM tickets WHERE number = ?1",
        )?
        .query_row([ticket.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, DateTime<Utc>>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .optional()?;
    let Some((subject, status, requester, requester_name, last_activity_at, queue)) = row else {
        return Ok(None);
    };
    let mut stmt = c.prepare_cached(
        "SELECT address, name FROM participants WHERE ticket_number = ?1 AND role = 'cc'
         ORDER BY address",
    )?;
    let rows = stmt
        .query_map([ticket.0], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let cc = rows
        .iter()
        .filter_map(|(address, name)| checked(ticket, address, name.as_deref()))
        .collect();
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
        requester: Mailbox::parse(&requester, requester_name.as_deref()).map_err(|e| {
            anyhow::anyhow!("ticket #{ticket} has a requester that is not valid: {e}")
        })?,
        cc,
        customer_message_ids,
        last_activity_at,
        queue,
    }))
}

/// A stored Cc, if its address is valid; one that is not (kept by a
/// version before addresses were checked) is left out with a warning, so
/// that the ticket's mail still goes to everyone else.
fn checked(ticket: TicketNumber, address: &str, name: Option<&str>) -> Option<Mailbox> {
    match Mailbox::parse(address, name) {
        Ok(mailbox) => Some(mailbox),
        Err(err) => {
            tracing::warn!("A Cc of ticket #{ticket} is left out of its mail: {err}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MailSource;
    use crate::store::lifecycle::tests::open;

    #[test]
    fn automatic_mails_count_per_recipient_over_the_last_hour_and_expired_rows_go() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pipeline) = open(dir.path());
        let now = Utc::now();
        let hours = |h: f64| now - chrono::Duration::seconds((h * 3600.0) as i64);
        // Each new ticket's confirmation is an automatic mail to its sender.
        let mails = [
            (1, "ann@customer.test", hours(3.0)),
            (2, "bob@customer.test", hours(3.0)),
            (3, "ann@customer.test", hours(1.5)),
            (4, "ann@customer.test", hours(0.5)),
            (5, "ann@customer.test", now),
            (6, "carol@customer.test", now),
        ];
        for (n, from, at) in mails {
            let raw = format!(
                "From: {from}\r\nTo: tickets@support.test\r\nSubject: Printer {n}\r\n\
                 Message-ID: <auto{n}@customer.test>\r\n\r\nHelp.\r\n"
            );
            store
                .ingest_mail(&pipeline, raw.as_bytes(), &MailSource::Pipe, at)
                .unwrap();
        }
        let conn = store.write().unwrap();
        let tx = conn.begin().unwrap();
        let lookup = TxLookup::new(&tx);
        let last_hour = |address| lookup.automatic_mails_since(address, hours(1.0)).unwrap();
        assert_eq!(
            last_hour("ann@customer.test"),
            2,
            "the mails of 0.5 h and now"
        );
        assert_eq!(last_hour("bob@customer.test"), 0);
        assert_eq!(last_hour("carol@customer.test"), 1);
        assert_eq!(
            lookup
                .automatic_mails_since("ann@customer.test", hours(2.0))
                .unwrap(),
            3
        );
        // Past two hours a row is dropped as later ones come: the two of
        // 3 h ago went with the mails after them; the rest stays.
        let kept: i64 = tx
            .query_row("SELECT count(*) FROM recent_automatic_mails", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(kept, 4);
        // Every confirmation is still in the outbox: only the count moved.
        let queued: i64 = tx
            .query_row("SELECT count(*) FROM outbox WHERE automatic = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(queued, 6);
    }

    /// An in-memory database with the columns `ticket_info` reads, and `rows`.
    fn tables_with(rows: &str) -> rusqlite::Connection {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE tickets (number INTEGER PRIMARY KEY, subject TEXT, status TEXT,
               requester TEXT, requester_name TEXT, last_activity_at TEXT, queue TEXT);
             CREATE TABLE participants (ticket_number INTEGER, address TEXT, name TEXT, role TEXT);
             CREATE TABLE messages (id INTEGER PRIMARY KEY, ticket_number INTEGER,
               message_id TEXT, kind TEXT);",
        )
        .unwrap();
        c.execute_batch(rows).unwrap();
        c
    }

    #[test]
    fn a_stored_cc_that_is_not_valid_is_left_out_not_an_error() {
        let c = tables_with(
            "INSERT INTO tickets VALUES (1, 's', 'open', 'ann@customer.test', NULL,
               '2026-01-01T00:00:00Z', 'support');
             INSERT INTO participants VALUES (1, 'ann@customer.test', NULL, 'requester'),
               (1, '@evil.test', NULL, 'cc'), (1, 'x@', NULL, 'cc'),
               (1, 'a@b@c.test', NULL, 'cc'), (1, 'carol@customer.test', 'Carol', 'cc'),
               (1, 'mallory@evil.test', NULL, 'proposed');",
        );
        let c = Tx::lite(&c);
        let info = ticket_info(&c, TicketNumber(1)).unwrap().unwrap();
        let cc: Vec<&str> = info.cc.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(cc, vec!["carol@customer.test"]);
        let people = TxLookup::new(&c)
            .participants(TicketNumber(1))
            .unwrap()
            .unwrap();
        assert!(
            !people.iter().any(|p| p == "mallory@evil.test"),
            "{people:?}"
        );
        assert!(people.iter().any(|p| p == "ann@customer.test"));
    }

    /// One decision reads its ticket once, however often it asks (its
    /// queue, the follow-up, the people to tell); the next decision, with
    /// a lookup of its own, reads what the one before wrote.
    #[test]
    fn a_decision_reads_its_ticket_once_and_the_next_one_anew() {
        let c = tables_with(
            "INSERT INTO tickets VALUES (1, 'Printer', 'open', 'ann@customer.test', NULL,
               '2026-01-01T00:00:00Z', 'support'),
               (2, 'Scanner', 'open', 'bob@customer.test', NULL,
               '2026-01-01T00:00:00Z', 'sales');",
        );
        let c = Tx::lite(&c);
        let decision = TxLookup::new(&c);
        let queue = decision.ticket_queue(TicketNumber(1)).unwrap();
        assert_eq!(queue.as_deref(), Some("support"));
        // Written behind the decision's back (nothing does so in ingest:
        // the decision is made before its writes).
        c.execute("UPDATE tickets SET subject = 'Fax', queue = 'x'", [])
            .unwrap();
        let info = decision.ticket_info(TicketNumber(1)).unwrap().unwrap();
        assert_eq!(
            (info.subject.as_str(), info.queue.as_str()),
            ("Printer", "support")
        );
        // Another ticket is read, not taken for the first.
        let other = decision.ticket_info(TicketNumber(2)).unwrap().unwrap();
        assert_eq!(
            (other.number, other.subject.as_str()),
            (TicketNumber(2), "Fax")
        );
        assert_eq!(
            decision
                .ticket_info(TicketNumber(3))
                .unwrap()
                .map(|i| i.number),
            None
        );
        let next = TxLookup::new(&c);
        let info = next.ticket_info(TicketNumber(1)).unwrap().unwrap();
        assert_eq!(info.subject, "Fax");
    }
}
