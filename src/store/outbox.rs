//! Outbox rows: claiming what is due and recording how a delivery went.
//! A claimed row is `sending`; a daemon that dies mid-send leaves it so.
//! At the next start, rows the sent journal (`outbound::journal`) names
//! are recorded as sent and the rest go back to `pending`. Delivery is at
//! least once: only a crash between the server's 250 and the journal's
//! fdatasync can send a mail twice, which is the only safe side to err on.
//! A login the server refuses is ours to fix, not the mail's: the row stays
//! pending, no attempt counted, held until its route's next try, and
//! `smtp_auth_routes` says which route since when (see `smtp_auth`).
//! Operators list rows and put failed ones back (`outbox list|retry`) with
//! the same stored bytes, so the same Message-ID.

use super::db::{Backend, OptionalExtension, Tx};
use crate::sql_params as params;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::Store;

/// One mail to send.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
    pub attempts: u32,
}

/// How one delivery attempt went.
#[derive(Debug, Clone)]
pub enum DeliveryResult {
    Sent,
    /// Try again later (4xx, network).
    Temporary(String),
    /// Give up (5xx, or too many attempts).
    Permanent(String),
    /// The server refused our login (535, 534, 530, 454 4.7.x): the mail
    /// waits, pending, without an attempt counted.
    AuthFailed(String),
}

impl Store {
    /// Marks rows left `sending` whose Message-ID the sent journal holds as
    /// sent; returns how many.
    pub fn recover_sent(
        &self,
        message_ids: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        let conn = self.write()?;
        let tx = conn.begin()?;
        let mut recovered = 0;
        for id in message_ids {
            recovered += tx.execute(
                // `pending` too: another daemon's heartbeat may have put
                // it back already; the journal says the server took it.
                "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1
                 WHERE message_id = ?1 AND status IN ('sending', 'pending')",
                params![id, now],
            )?;
        }
        tx.commit()?;
        Ok(recovered)
    }

    /// Puts rows left `sending` by a previous run (or by this one, after the
    /// database failed a claim or a batch) back in the queue. With SQLite that is
    /// every such row (one daemon); with PostgreSQL this daemon's and those
    /// no daemon claimed by name: another daemon's are put back once it is
    /// gone (`instance_alive`).
    pub fn requeue_interrupted(&self) -> anyhow::Result<usize> {
        let conn = self.write()?;
        match conn.backend() {
            Backend::Sqlite => conn.execute(
                "UPDATE outbox SET status = 'pending' WHERE status = 'sending'",
                [],
            ),
            Backend::Postgres => conn.execute(
                "UPDATE outbox SET status = 'pending'
                 WHERE status = 'sending' AND (claimed_by IS NULL OR claimed_by = ?1)",
                [self.instance.as_str()],
            ),
        }
    }

    /// Gives claimed but unattempted rows back to the queue.
    pub fn release_claims(&self, ids: &[i64]) -> anyhow::Result<()> {
        let conn = self.write()?;
        for id in ids {
            conn.execute(
                "UPDATE outbox SET status = 'pending' WHERE id = ?1 AND status = 'sending'
                 AND (claimed_by IS NULL OR claimed_by = ?2)",
                params![id, self.instance],
            )?;
        }
        Ok(())
    }

    /// Claims up to `limit` due rows and marks them `sending`.
    pub fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxItem>> {
        self.record_and_claim(&[], 0, now, limit)
    }

    /// [`Store::record_deliveries`] for the batch just sent, then
    /// [`Store::claim_outbox`] for the next, in one transaction: one commit
    /// (and one sync) between two batches instead of two; both held the
    /// writer between ingest's batches. If it fails, neither happened or
    /// both did: the caller settles from the sent journal as after a
    /// failed record.
    pub fn record_and_claim(
        &self,
        results: &[(i64, DeliveryResult)],
        max_attempts: u32,
        now: DateTime<Utc>,
        limit: usize,
    ) -> anyhow::Result<Vec<OutboxItem>> {
        let conn = self.write()?;
        let tx = conn.begin()?;
        for (id, result) in results {
            record_one(&tx, &self.instance, *id, result, max_attempts, now)?;
        }
        let mut items = tx
            .query_map(
                match tx.backend() {
                    // One writer: the rows read are the rows marked.
                    Backend::Sqlite => {
                        "UPDATE outbox SET status = 'sending', claimed_by = ?3
                         WHERE id IN (SELECT id FROM outbox
                                       WHERE status = 'pending' AND next_attempt_at <= ?1
                                       ORDER BY id LIMIT ?2)
                         RETURNING id, message_id, envelope_from, recipients, raw, attempts"
                    }
                    // Several daemons: each claims rows no other holds.
                    Backend::Postgres => {
                        "UPDATE outbox SET status = 'sending', claimed_by = ?3
                         WHERE id IN (SELECT id FROM outbox
                                       WHERE status = 'pending' AND next_attempt_at <= ?1
                                       ORDER BY id LIMIT ?2 FOR UPDATE SKIP LOCKED)
                         RETURNING id, message_id, envelope_from, recipients, raw, attempts"
                    }
                },
                params![now, limit as i64, self.instance],
                |r| {
                    let recipients: String = r.get(3)?;
                    Ok(OutboxItem {
                        id: r.get(0)?,
                        message_id: r.get(1)?,
                        envelope_from: r.get(2)?,
                        recipients: recipients.split(',').map(str::to_string).collect(),
                        raw: r.get(4)?,
                        attempts: r.get(5)?,
                    })
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        // RETURNING keeps no order.
        items.sort_by_key(|item| item.id);
        Ok(items)
    }

    /// Records the result of one attempt. A temporary failure is retried
    /// with capped exponential backoff until `max_attempts`. A row another
    /// daemon claimed since (this one was taken for gone) is left to it.
    pub fn record_delivery(
        &self,
        id: i64,
        result: &DeliveryResult,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        self.record_deliveries(&[(id, result.clone())], max_attempts, now)
    }

    /// [`Store::record_delivery`] for each attempt of a batch, in one
    /// transaction: one commit (and one sync) for the batch, not one per
    /// mail, each of which held the writer back between two of ingest's
    /// batches. The sent journal holds what was sent until then: if this
    /// fails, the next settling records those as sent and puts the rest
    /// back in the queue, their attempt not counted.
    pub fn record_deliveries(
        &self,
        results: &[(i64, DeliveryResult)],
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if results.is_empty() {
            return Ok(());
        }
        let conn = self.write()?;
        let tx = conn.begin()?;
        for (id, result) in results {
            record_one(&tx, &self.instance, *id, result, max_attempts, now)?;
        }
        tx.commit()
    }

    /// How many rows are pending and failed (for metrics and tests).
    pub fn outbox_counts(&self) -> anyhow::Result<(i64, i64)> {
        self.read(|c| {
            c.query_row(
                "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')),
                        count(*) FILTER (WHERE status = 'failed') FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }
}

/// One attempt's result on its row (see [`Store::record_delivery`]).
fn record_one(
    tx: &Tx,
    instance: &str,
    id: i64,
    result: &DeliveryResult,
    max_attempts: u32,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    match result {
        DeliveryResult::Sent => {
            tx.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1,
                 last_error = NULL, held_for = NULL WHERE id = ?1 AND (claimed_by IS NULL OR claimed_by = ?3)",
                params![id, now, instance],
            )?;
        }
        DeliveryResult::Temporary(error) => {
            let attempts: u32 =
                tx.query_row("SELECT attempts FROM outbox WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
            let attempts = attempts + 1;
            let status = if attempts >= max_attempts {
                "failed"
            } else {
                "pending"
            };
            tx.execute(
                "UPDATE outbox SET status = ?2, attempts = ?3, last_error = ?4,
                 next_attempt_at = ?5, held_for = NULL WHERE id = ?1 AND (claimed_by IS NULL OR claimed_by = ?6)",
                params![
                    id,
                    status,
                    attempts,
                    error,
                    now + retry_delay(attempts),
                    instance
                ],
            )?;
        }
        DeliveryResult::Permanent(error) => {
            tx.execute(
                "UPDATE outbox SET status = 'failed', attempts = attempts + 1,
                 last_error = ?2, held_for = NULL WHERE id = ?1 AND (claimed_by IS NULL OR claimed_by = ?3)",
                params![id, error, instance],
            )?;
        }
        DeliveryResult::AuthFailed(error) => {
            tx.execute(
                "UPDATE outbox SET status = 'pending', last_error = ?2 WHERE id = ?1 AND (claimed_by IS NULL OR claimed_by = ?3)",
                params![id, error, instance],
            )?;
        }
    }
    Ok(())
}

/// One row of `outbox list`.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub message_id: String,
    pub status: String,
    /// `None` for mail that belongs to no ticket (a quarantine notice).
    pub ticket: Option<i64>,
    pub kind: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The route (its first queue's name) whose refused SMTP login holds
    /// this mail back; `None` when nothing holds it.
    pub held_for: Option<String>,
}

/// What `outbox retry ID` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxRetry {
    /// Failed before; pending again with its attempts reset.
    Requeued,
    /// Already waiting (or being sent): nothing to do.
    AlreadyQueued,
    /// Delivered already: not sent twice.
    AlreadySent,
    NotFound,
}

impl Store {
    /// The newest `limit` rows (only failed ones with `failed_only`) and
    /// how many there are in all.
    pub fn outbox_list(
        &self,
        failed_only: bool,
        limit: usize,
    ) -> anyhow::Result<(Vec<OutboxEntry>, i64)> {
        self.read(|c| {
            let total = c.query_row(
                "SELECT count(*) FROM outbox WHERE NOT ?1 OR status = 'failed'",
                [failed_only],
                |r| r.get(0),
            )?;
            let sql = format!(
                "{ENTRY_SELECT} WHERE NOT ?1 OR o.status = 'failed' ORDER BY o.id DESC LIMIT ?2"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![failed_only, limit], entry_row)?;
            Ok((rows.collect::<Result<Vec<_>, _>>()?, total))
        })
    }

    /// One row of the outbox, as `outbox list` shows it.
    pub fn outbox_entry(&self, id: i64) -> anyhow::Result<Option<OutboxEntry>> {
        self.read(|c| {
            let sql = format!("{ENTRY_SELECT} WHERE o.id = ?1");
            c.query_row(&sql, [id], entry_row).optional()
        })
    }

    /// Puts failed row `id` back in the queue: same bytes (so the same
    /// Message-ID), attempts reset, due now.
    pub fn outbox_retry(&self, id: i64, now: DateTime<Utc>) -> anyhow::Result<OutboxRetry> {
        let conn = self.write()?;
        let status: Option<String> = conn
            .query_row("SELECT status FROM outbox WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(match status.as_deref() {
            None => OutboxRetry::NotFound,
            Some("sent") => OutboxRetry::AlreadySent,
            Some("failed") => {
                conn.execute(
                    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?2
                     WHERE id = ?1 AND status = 'failed'",
                    params![id, now],
                )?;
                OutboxRetry::Requeued
            }
            Some(_) => OutboxRetry::AlreadyQueued,
        })
    }

    /// Puts every failed row back in the queue; returns their ids.
    pub fn outbox_retry_all_failed(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<i64>> {
        let conn = self.write()?;
        let plain = conn.plain();
        let mut stmt = plain.prepare(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?1
             WHERE status = 'failed' RETURNING id",
        )?;
        let ids = stmt.query_map([now], |r| r.get(0))?;
        let mut ids = ids.collect::<Result<Vec<i64>, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    }
}

/// The columns of an [`OutboxEntry`]. Mail of no ticket has no message
/// row: its subject is read from the head of the stored bytes.
const ENTRY_SELECT: &str = "SELECT o.id, o.message_id, o.status, o.ticket_number, o.kind,
        o.recipients, m.subject, CASE WHEN m.subject IS NULL THEN substr(o.raw, 1, 8192) END,
        o.attempts, o.last_error, o.created_at, o.sent_at, o.held_for
   FROM outbox o
   LEFT JOIN messages m ON m.message_id = o.message_id AND m.raw_mail_id IS NULL
    AND m.direction = 'out'";

fn entry_row(r: &super::db::Row) -> anyhow::Result<OutboxEntry> {
    let recipients: String = r.get(5)?;
    let subject: Option<String> = r.get(6)?;
    let head: Option<Vec<u8>> = r.get(7)?;
    Ok(OutboxEntry {
        id: r.get(0)?,
        message_id: r.get(1)?,
        status: r.get(2)?,
        ticket: r.get(3)?,
        kind: r.get(4)?,
        recipients: recipients.split(',').map(str::to_string).collect(),
        subject: subject.unwrap_or_else(|| header_subject(&head.unwrap_or_default())),
        attempts: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        sent_at: r.get(11)?,
        held_for: r.get(12)?,
    })
}

/// The Subject of a mail's head, decoded; empty when there is none.
fn header_subject(head: &[u8]) -> String {
    mail_parser::MessageParser::new()
        .parse_headers(head)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

/// 5 s, 10 s, 20 s, … capped at 10 minutes.
pub fn retry_delay(attempts: u32) -> Duration {
    let secs = 5i64.saturating_mul(1i64 << attempts.saturating_sub(1).min(10));
    Duration::seconds(secs.min(600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Pipeline;
    use crate::settings::Settings;
    use crate::store::MailSource;

    /// A store with one ticket, so one confirmation in the outbox.
    fn desk() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![(
            "POSTDESK__SUPPORT__ADDRESS".to_string(),
            "tickets@support.test".to_string(),
        )];
        let settings = Settings::load_with_env(None, env).unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let pipeline = Pipeline::new(&settings, "unit-secret-unit-secret");
        let raw = b"From: ann@customer.test\r\nTo: tickets@support.test\r\nSubject: Help me\r\n\
                    Message-ID: <o1@customer.test>\r\n\r\nPlease.\r\n";
        store
            .ingest_mail(&pipeline, raw, &MailSource::Pipe, Utc::now())
            .unwrap();
        let (rows, total) = store.outbox_list(false, 10).unwrap();
        assert_eq!(total, 1);
        (dir, store, rows[0].id)
    }

    fn entry(store: &Store, id: i64) -> OutboxEntry {
        store.outbox_entry(id).unwrap().unwrap()
    }

    #[test]
    fn a_batchs_results_are_recorded_each_on_its_row_before_the_next_claim() {
        let (_dir, store, first) = desk();
        let settings = Settings::load_with_env(
            None,
            vec![(
                "POSTDESK__SUPPORT__ADDRESS".to_string(),
                "tickets@support.test".to_string(),
            )],
        )
        .unwrap();
        let pipeline = Pipeline::new(&settings, "unit-secret-unit-secret");
        for n in 2..=3 {
            let raw = format!(
                "From: ann{n}@customer.test\r\nTo: tickets@support.test\r\nSubject: Help {n}\r\n\
                 Message-ID: <o{n}@customer.test>\r\n\r\nPlease.\r\n"
            );
            store
                .ingest_mail(&pipeline, raw.into_bytes(), &MailSource::Pipe, Utc::now())
                .unwrap();
        }
        let now = Utc::now();
        let ids: Vec<i64> = store
            .claim_outbox(now, 10)
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0], first);
        let results = [
            (ids[0], DeliveryResult::Sent),
            (
                ids[1],
                DeliveryResult::Temporary("transient error (451): later".into()),
            ),
            (
                ids[2],
                DeliveryResult::Permanent("permanent error (550): no".into()),
            ),
        ];
        // A mail queued meanwhile: the claim after the record takes it
        // (and not the one to try later, nor the ones done).
        let raw = "From: ann4@customer.test\r\nTo: tickets@support.test\r\nSubject: Help 4\r\n\
                   Message-ID: <o4@customer.test>\r\n\r\nPlease.\r\n";
        store
            .ingest_mail(&pipeline, raw.as_bytes().to_vec(), &MailSource::Pipe, now)
            .unwrap();
        let next = store.record_and_claim(&results, 5, now, 10).unwrap();
        assert_eq!(next.len(), 1);
        assert!(!ids.contains(&next[0].id));
        assert!(String::from_utf8_lossy(&next[0].raw).contains("ann4@customer.test"));
        let rows: Vec<(String, u32)> = ids
            .iter()
            .map(|&id| {
                let row = entry(&store, id);
                (row.status, row.attempts)
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("sent".to_string(), 1),
                ("pending".to_string(), 1),
                ("failed".to_string(), 1)
            ]
        );
        assert!(entry(&store, ids[0]).sent_at.is_some());
    }

    #[test]
    fn a_refused_login_leaves_the_mail_pending_and_uncounted() {
        let (_dir, store, id) = desk();
        let now = Utc::now();
        let refused = DeliveryResult::AuthFailed("permanent error (535): 5.7.8 no".into());
        for _ in 0..20 {
            store.claim_outbox(now, 10).unwrap();
            store.record_delivery(id, &refused, 3, now).unwrap();
        }
        let row = entry(&store, id);
        assert_eq!((row.status.as_str(), row.attempts), ("pending", 0));
        assert_eq!(
            row.last_error.as_deref(),
            Some("permanent error (535): 5.7.8 no")
        );
        assert_eq!(store.claim_outbox(now, 10).unwrap().len(), 1, "due at once");
    }

    #[test]
    fn only_failed_mail_is_retried_with_the_same_bytes() {
        let (_dir, store, id) = desk();
        let now = Utc::now();
        let raw = store.claim_outbox(now, 10).unwrap()[0].raw.clone();
        let refused = DeliveryResult::Permanent("permanent error (554): 5.7.1 relay".into());
        store.record_delivery(id, &refused, 5, now).unwrap();
        let (failed, total) = store.outbox_list(true, 10).unwrap();
        assert_eq!((failed.len(), total), (1, 1));
        assert_eq!(failed[0].subject, "[Ticket #1] Help me");
        assert_eq!(failed[0].recipients, ["ann@customer.test"]);

        assert_eq!(store.outbox_retry(id, now).unwrap(), OutboxRetry::Requeued);
        assert_eq!(
            store.outbox_retry(id, now).unwrap(),
            OutboxRetry::AlreadyQueued
        );
        let claimed = store.claim_outbox(now, 10).unwrap();
        assert_eq!((claimed[0].attempts, &claimed[0].raw), (0, &raw));
        store
            .record_delivery(id, &DeliveryResult::Sent, 5, now)
            .unwrap();
        assert_eq!(
            store.outbox_retry(id, now).unwrap(),
            OutboxRetry::AlreadySent
        );
        assert_eq!(
            store.outbox_retry(id + 1, now).unwrap(),
            OutboxRetry::NotFound
        );
        assert!(store.outbox_retry_all_failed(now).unwrap().is_empty());
        assert!(store.outbox_list(true, 10).unwrap().0.is_empty());
    }

    #[test]
    fn all_failed_mail_goes_back_at_once() {
        let (_dir, store, id) = desk();
        let now = Utc::now();
        store.claim_outbox(now, 10).unwrap();
        let gave_up = DeliveryResult::Temporary("transient error (451): later".into());
        store.record_delivery(id, &gave_up, 1, now).unwrap();
        assert_eq!(entry(&store, id).status, "failed", "too many attempts");
        assert_eq!(store.outbox_retry_all_failed(now).unwrap(), [id]);
        assert_eq!(entry(&store, id).status, "pending");
    }

    #[test]
    fn held_mail_is_passed_over_until_its_time_and_released_at_start() {
        let (_dir, store, id) = desk();
        let now = Utc::now();
        let claimed = store.claim_outbox(now, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        let refused = DeliveryResult::AuthFailed("permanent error (535): 5.7.8 no".into());
        store.record_delivery(id, &refused, 3, now).unwrap();
        let later = now + Duration::seconds(30);
        store.hold_outbox(&[id], "billing", later).unwrap();
        let row = entry(&store, id);
        assert_eq!((row.status.as_str(), row.attempts), ("pending", 0));
        assert_eq!(row.held_for.as_deref(), Some("billing"));
        assert!(store.claim_outbox(now, 10).unwrap().is_empty(), "held");
        assert_eq!(store.claim_outbox(later, 10).unwrap().len(), 1, "due then");
        store.hold_outbox(&[id], "billing", later).unwrap();

        assert_eq!(store.release_held_outbox(now).unwrap(), ["billing"]);
        assert_eq!(entry(&store, id).held_for, None);
        assert_eq!(store.claim_outbox(now, 10).unwrap().len(), 1, "due at once");
        store
            .record_delivery(id, &DeliveryResult::Sent, 3, now)
            .unwrap();
        // A sent row is never held again, nor put back.
        store.hold_outbox(&[id], "billing", later).unwrap();
        let row = entry(&store, id);
        assert_eq!((row.status.as_str(), row.held_for), ("sent", None));
        assert!(store.release_held_outbox(now).unwrap().is_empty());
    }

    #[test]
    fn retries_back_off_with_a_cap() {
        assert_eq!(retry_delay(1).num_seconds(), 5);
        assert_eq!(retry_delay(2).num_seconds(), 10);
        assert_eq!(retry_delay(30).num_seconds(), 600);
    }
}
