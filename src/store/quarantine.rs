//! The quarantine as the operator works it: `retry` runs ingest again on a
//! quarantined mail's stored bytes (after an upgrade, or a raised limit),
//! `drop` deletes it. Each call is one transaction. Listing and reasons are
//! read models and live in `tickets.rs`; deciding what goes into the
//! quarantine is ingest's job, not this file's.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::Store;
use super::ingest::{IngestReport, MailSource, ingest_one};
use crate::ingest::Pipeline;

/// What a retry came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Processed: the mail left the quarantine; where it went.
    Ingested(IngestReport),
    /// Still unusable: it stays (same id), with this attempt's reason.
    StillQuarantined { reason: String },
}

impl Store {
    /// Runs ingest again on quarantined mail `id`. `None` when there is no
    /// such entry. On success the entry and its old raw row are gone and
    /// the mail is stored as if it had just arrived, all in one
    /// transaction; otherwise nothing changes but the reason.
    pub fn quarantine_retry(
        &self,
        pipeline: &Pipeline,
        id: i64,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<RetryOutcome>> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(entry) = entry(&tx, id)? else {
            return Ok(None);
        };
        // The mail's own raw row would make it look already seen (its
        // dedup key is the Message-ID or the content hash): it goes first.
        delete_entry(&tx, id, entry.raw_id)?;
        let source = parse_source(&entry.source);
        match ingest_one(&tx, pipeline, &entry.raw, entry.size, &source, now)? {
            IngestReport::Quarantined { reason } => {
                tx.rollback()?;
                conn.execute(
                    "UPDATE quarantine SET reason = ?2 WHERE id = ?1",
                    params![id, reason],
                )?;
                Ok(Some(RetryOutcome::StillQuarantined { reason }))
            }
            report => {
                tx.commit()?;
                Ok(Some(RetryOutcome::Ingested(report)))
            }
        }
    }

    /// Deletes quarantined mail `id` and its stored bytes; `false` when
    /// there is no such entry. A later delivery of the same mail is then
    /// processed afresh.
    pub fn quarantine_drop(&self, id: i64) -> anyhow::Result<bool> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let Some(entry) = entry(&tx, id)? else {
            return Ok(false);
        };
        delete_entry(&tx, id, entry.raw_id)?;
        tx.commit()?;
        Ok(true)
    }
}

struct Entry {
    raw_id: i64,
    raw: Vec<u8>,
    /// Larger than `raw` when only the header of an oversize mail was kept.
    size: u64,
    source: String,
}

fn entry(tx: &Connection, id: i64) -> anyhow::Result<Option<Entry>> {
    Ok(tx
        .query_row(
            "SELECT r.id, r.bytes, r.size, r.source FROM quarantine q
             JOIN raw_mails r ON r.id = q.raw_mail_id WHERE q.id = ?1",
            [id],
            |r| {
                Ok(Entry {
                    raw_id: r.get(0)?,
                    raw: r.get(1)?,
                    size: r.get::<_, i64>(2)?.try_into().unwrap_or(0),
                    source: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// The quarantine row, and its raw row unless a stored message uses it.
fn delete_entry(tx: &Connection, id: i64, raw_id: i64) -> anyhow::Result<()> {
    tx.execute("DELETE FROM quarantine WHERE id = ?1", [id])?;
    tx.execute(
        "DELETE FROM raw_mails WHERE id = ?1
         AND NOT EXISTS (SELECT 1 FROM messages WHERE raw_mail_id = ?1)
         AND NOT EXISTS (SELECT 1 FROM quarantine WHERE raw_mail_id = ?1)",
        [raw_id],
    )?;
    Ok(())
}

/// The stored `source` text back as a [`MailSource`]:
/// `imap:MAILBOX:UIDVALIDITY:UID` (the mailbox may hold colons) or `pipe`.
fn parse_source(text: &str) -> MailSource {
    let imap = text.strip_prefix("imap:").and_then(|rest| {
        let mut parts = rest.rsplitn(3, ':');
        let uid = parts.next()?.parse().ok()?;
        let uidvalidity = parts.next()?.parse().ok()?;
        let mailbox = parts.next()?.to_string();
        Some(MailSource::Imap {
            mailbox,
            uidvalidity,
            uid,
        })
    });
    imap.unwrap_or(MailSource::Pipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_back() {
        let MailSource::Imap {
            mailbox,
            uidvalidity,
            uid,
        } = parse_source("imap:Support:Old:7:42")
        else {
            panic!("an IMAP source");
        };
        assert_eq!((mailbox.as_str(), uidvalidity, uid), ("Support:Old", 7, 42));
        assert!(matches!(parse_source("pipe"), MailSource::Pipe));
        assert!(matches!(parse_source("imap:broken"), MailSource::Pipe));
    }
}
