//! Lifecycle writes outside ingest: a status set from the command line,
//! and resolved tickets closing by themselves after `autoclose_days`. Each
//! change queues the customer's status email in the same transaction.

use super::db::Tx;
use crate::sql_params as params;
use chrono::{DateTime, Duration, Utc};

use super::Store;
use super::lookup::ticket_info;
use super::write::{enqueue, insert_link};
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
        let conn = self.write()?;
        let tx = conn.begin()?;
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
    /// the numbers of those closed. Each ticket is closed in its own
    /// savepoint: one that cannot be (its status mail cannot be built) is
    /// logged and left as it is, and never stops the others.
    pub fn autoclose(
        &self,
        pipeline: &Pipeline,
        days: f64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<TicketNumber>> {
        let cutoff = now - Duration::milliseconds((days * 86_400_000.0) as i64);
        let conn = self.write()?;
        let tx = conn.begin()?;
        let due: Vec<TicketNumber> = {
            let mut stmt = tx.prepare_cached(
                "SELECT number FROM tickets WHERE status = 'resolved' AND last_activity_at < ?1
                 ORDER BY number LIMIT 500",
            )?;
            let rows = stmt.query_map([cutoff], |r| r.get(0).map(TicketNumber))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut closed = Vec::with_capacity(due.len());
        for number in due {
            let step = tx.savepoint()?;
            match change_status(&step, pipeline, number, Status::Closed, now) {
                Ok(_) => {
                    step.commit()?;
                    closed.push(number);
                }
                Err(err) => {
                    // Dropping the savepoint rolls this ticket back.
                    tracing::warn!("Ticket #{number} could not be closed by autoclose: {err:#}");
                }
            }
        }
        tx.commit()?;
        Ok(closed)
    }
}

/// Moves one ticket to `status` and queues the status email, unless it is
/// already there.
fn change_status(
    tx: &Tx,
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::domain::Role;
    use crate::store::MailSource;
    use crate::store::db::OptionalExtension;
    use crate::tokens::Purpose;

    const AGENT: &str = "alice@support.test";

    /// A store of the tests' backend in `dir`, with one agent, and its
    /// pipeline (other store tests use it too).
    pub(in crate::store) fn open(
        dir: &std::path::Path,
    ) -> (std::sync::Arc<Store>, std::sync::Arc<Pipeline>) {
        let env = [
            ("SUPPORT__ADDRESS", "tickets@support.test".to_string()),
            ("SUPPORT__AGENTS", AGENT.to_string()),
            ("DATABASE__PATH", dir.join("t.db").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (format!("POSTDESK__{k}"), v))
        .collect();
        let settings = crate::settings::Settings::load_with_env(None, env).unwrap();
        crate::app::open_store(&settings).unwrap()
    }

    fn ingest(store: &Store, pipeline: &Pipeline, raw: &str) {
        store
            .ingest_mail(pipeline, raw.as_bytes(), &MailSource::Pipe, Utc::now())
            .unwrap();
    }

    fn new_ticket(store: &Store, pipeline: &Pipeline, from: &str, n: u32) {
        let raw = format!(
            "From: {from}\r\nTo: tickets@support.test\r\nSubject: Help {n}\r\n\
             Message-ID: <t{n}@customer.test>\r\n\r\nhello\r\n"
        );
        ingest(store, pipeline, &raw);
    }

    fn role(store: &Store, ticket: i64, address: &str) -> Option<Role> {
        let conn = store.write().unwrap();
        let role: Option<String> = conn
            .query_row(
                "SELECT role FROM participants WHERE ticket_number = ?1 AND address = ?2",
                params![ticket, address],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        role.and_then(|r| Role::parse(&r))
    }

    #[test]
    fn one_ticket_that_cannot_be_closed_does_not_stop_autoclose() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pipeline) = open(dir.path());
        for n in 1..=3 {
            new_ticket(&store, &pipeline, &format!("c{n}@customer.test"), n);
        }
        store
            .write()
            .unwrap()
            .plain()
            .execute_batch(
                "UPDATE tickets SET status = 'resolved', last_activity_at = '2020-01-01T00:00:00Z';
             UPDATE tickets SET requester = 'x@' WHERE number = 2;",
            )
            .unwrap();
        let closed = store.autoclose(&pipeline, 1.0, Utc::now()).unwrap();
        assert_eq!(closed, vec![TicketNumber(1), TicketNumber(3)]);
        let status = |n: i64| -> String {
            store
                .write()
                .unwrap()
                .query_row("SELECT status FROM tickets WHERE number = ?1", [n], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        assert_eq!(
            (status(1), status(2), status(3)),
            ("closed".into(), "resolved".into(), "closed".into())
        );
    }

    #[test]
    fn set_status_works_on_a_ticket_with_bad_ccs_stored_by_an_older_version() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pipeline) = open(dir.path());
        new_ticket(&store, &pipeline, "ann@customer.test", 1);
        store
            .write()
            .unwrap()
            .plain()
            .execute_batch(
                "INSERT INTO participants (ticket_number, address, role) VALUES
               (1, '@evil.test', 'cc'), (1, 'x@', 'cc'), (1, 'a@b@c.test', 'cc'),
               (1, 'carol@customer.test', 'cc');",
            )
            .unwrap();
        let old = store
            .set_status(
                &pipeline,
                TicketNumber(1),
                Status::Pending,
                None,
                Utc::now(),
            )
            .unwrap();
        assert_eq!(old, Some(Status::New));
        let recipients: String = store
            .write()
            .unwrap()
            .query_row(
                "SELECT recipients FROM outbox WHERE kind = 'status'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(recipients.contains("ann@customer.test"), "{recipients}");
        assert!(recipients.contains("carol@customer.test"), "{recipients}");
        assert!(
            !recipients.contains("x@,") && !recipients.contains("@evil"),
            "{recipients}"
        );
    }

    #[test]
    fn a_proposed_cc_is_promoted_by_cc_and_removed_by_uncc_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (store, pipeline) = open(dir.path());
        new_ticket(&store, &pipeline, "ann@customer.test", 1);
        let forged = "From: ann@customer.test\r\nTo: tickets@support.test\r\n\
                      Cc: Mallory <mallory@evil.test>\r\nSubject: Re: [Ticket #1] Help 1\r\n\
                      Message-ID: <f@evil.test>\r\n\r\nadd her\r\n";
        ingest(&store, &pipeline, forged);
        assert_eq!(role(&store, 1, "mallory@evil.test"), Some(Role::Proposed));
        let detail = store.ticket_detail(TicketNumber(1)).unwrap().unwrap();
        assert_eq!(detail.proposed_cc, vec!["mallory@evil.test".to_string()]);
        assert!(!detail.participants.iter().any(|p| p == "mallory@evil.test"));
        // A stranger's mail naming the requester as Cc (a proposed Cc, were
        // she not the requester) demotes nobody.
        let again = forged
            .replace("From: ann@customer.test", "From: bob@elsewhere.test")
            .replace(
                "Mallory <mallory@evil.test>",
                "ann@customer.test, carl@elsewhere.test",
            )
            .replace(
                "Message-ID: <f@",
                "In-Reply-To: <t1@customer.test>\r\nMessage-ID: <g@",
            );
        ingest(&store, &pipeline, &again);
        assert_eq!(
            role(&store, 1, "carl@elsewhere.test"),
            Some(Role::Proposed),
            "the mail went to ticket 1"
        );
        assert_eq!(role(&store, 1, "ann@customer.test"), Some(Role::Requester));

        let agent_mail = |n: u32, body: &str| {
            let parent = pipeline
                .message_id(TicketNumber(1), Purpose::Notification, Some(AGENT))
                .unwrap();
            format!(
                "From: {AGENT}\r\nTo: tickets@support.test\r\nSubject: Re: [Ticket #1] Help 1\r\n\
                 Message-ID: <a{n}@support.test>\r\nIn-Reply-To: <{parent}>\r\n\r\n{body}\r\n"
            )
        };
        ingest(&store, &pipeline, &agent_mail(1, "#cc mallory@evil.test"));
        assert_eq!(role(&store, 1, "mallory@evil.test"), Some(Role::Cc));
        ingest(&store, &pipeline, &agent_mail(2, "#uncc mallory@evil.test"));
        assert_eq!(role(&store, 1, "mallory@evil.test"), None);
    }
}
