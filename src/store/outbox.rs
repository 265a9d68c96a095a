//! Outbox rows: claiming what is due and recording how a delivery went.
//! A claimed row is `sending`; a daemon that dies mid-send leaves it so.
//! At the next start, rows the sent journal (`outbound::journal`) names
//! are recorded as sent and the rest go back to `pending`. Delivery is at
//! least once: only a crash between the server's 250 and the journal's
//! fdatasync can send a mail twice, which is the only safe side to err on.

use chrono::{DateTime, Duration, Utc};
use rusqlite::params;

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
}

impl Store {
    /// Marks rows left `sending` whose Message-ID the sent journal holds as
    /// sent; returns how many.
    pub fn recover_sent(
        &self,
        message_ids: &[String],
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        let mut conn = self.write();
        let tx = conn.transaction()?;
        let mut recovered = 0;
        for id in message_ids {
            recovered += tx.execute(
                "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1
                 WHERE message_id = ?1 AND status = 'sending'",
                params![id, now],
            )?;
        }
        tx.commit()?;
        Ok(recovered)
    }

    /// Puts rows left `sending` by a previous run back in the queue.
    pub fn requeue_interrupted(&self) -> anyhow::Result<usize> {
        let conn = self.write();
        Ok(conn.execute(
            "UPDATE outbox SET status = 'pending' WHERE status = 'sending'",
            [],
        )?)
    }

    /// Gives claimed but unattempted rows back to the queue.
    pub fn release_claims(&self, ids: &[i64]) -> anyhow::Result<()> {
        let conn = self.write();
        for id in ids {
            conn.execute(
                "UPDATE outbox SET status = 'pending' WHERE id = ?1 AND status = 'sending'",
                [id],
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
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let items = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, message_id, envelope_from, recipients, raw, attempts FROM outbox
                 WHERE status = 'pending' AND next_attempt_at <= ?1
                 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64], |r| {
                let recipients: String = r.get(3)?;
                Ok(OutboxItem {
                    id: r.get(0)?,
                    message_id: r.get(1)?,
                    envelope_from: r.get(2)?,
                    recipients: recipients.split(',').map(str::to_string).collect(),
                    raw: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        for item in &items {
            tx.execute(
                "UPDATE outbox SET status = 'sending' WHERE id = ?1",
                [item.id],
            )?;
        }
        tx.commit()?;
        Ok(items)
    }

    /// Records the result of one attempt. A temporary failure is retried
    /// with capped exponential backoff until `max_attempts`.
    pub fn record_delivery(
        &self,
        id: i64,
        result: &DeliveryResult,
        max_attempts: u32,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let conn = self.write();
        match result {
            DeliveryResult::Sent => {
                conn.execute(
                    "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1,
                     last_error = NULL WHERE id = ?1",
                    params![id, now],
                )?;
            }
            DeliveryResult::Temporary(error) => {
                let attempts: u32 =
                    conn.query_row("SELECT attempts FROM outbox WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })?;
                let attempts = attempts + 1;
                let status = if attempts >= max_attempts {
                    "failed"
                } else {
                    "pending"
                };
                conn.execute(
                    "UPDATE outbox SET status = ?2, attempts = ?3, last_error = ?4,
                     next_attempt_at = ?5 WHERE id = ?1",
                    params![id, status, attempts, error, now + retry_delay(attempts)],
                )?;
            }
            DeliveryResult::Permanent(error) => {
                conn.execute(
                    "UPDATE outbox SET status = 'failed', attempts = attempts + 1,
                     last_error = ?2 WHERE id = ?1",
                    params![id, error],
                )?;
            }
        }
        Ok(())
    }

    /// How many rows are pending and failed (for metrics and tests).
    pub fn outbox_counts(&self) -> anyhow::Result<(i64, i64)> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')),
                        count(*) FILTER (WHERE status = 'failed') FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
    }
}

/// 5 s, 10 s, 20 s, … capped at 10 minutes.
pub fn retry_delay(attempts: u32) -> Duration {
    let secs = 5i64.saturating_mul(1i64 << attempts.saturating_sub(1).min(10));
    Duration::seconds(secs.min(600))
}

#[cfg(test)]
mod tests {
    use super::retry_delay;

    #[test]
    fn retries_back_off_with_a_cap() {
        assert_eq!(retry_delay(1).num_seconds(), 5);
        assert_eq!(retry_delay(2).num_seconds(), 10);
        assert_eq!(retry_delay(30).num_seconds(), 600);
    }
}
