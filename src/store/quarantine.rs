//! The quarantine as the operator works it: `retry` runs ingest again on a
//! kept mail's stored bytes (after an upgrade, a raised limit, or once the
//! ticket an ignored mail answers exists), `drop` deletes it, `list` shows
//! one kind. Each call is one transaction. The table holds two kinds
//! (issue 12 §4): faults, mail that could not be processed (the
//! quarantine proper), and ignored machine mail that answers no ticket;
//! retry and drop take either. Deciding which a mail is, is ingest's job,
//! not this file's.

use super::db::{OptionalExtension, Tx};
use crate::sql_params as params;
use chrono::{DateTime, Utc};

use super::ingest::{IngestReport, MailSource, ingest_one};
use super::{QuarantineItem, Store};
use crate::ingest::Pipeline;

/// Which of the two kinds a kept mail is (the `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Could not be processed: the quarantine proper.
    Fault,
    /// Machine mail that answers no ticket.
    Ignored,
}

impl Kept {
    pub fn as_str(self) -> &'static str {
        match self {
            Kept::Fault => "fault",
            Kept::Ignored => "ignored",
        }
    }
}

/// What a retry came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Processed: the mail left the quarantine; where it went.
    Ingested(IngestReport),
    /// Still unusable: it stays (same id) as a fault, with this attempt's
    /// reason.
    StillQuarantined { reason: String },
    /// Still answers no ticket: it stays (same id) as ignored, with this
    /// attempt's reason.
    StillIgnored { reason: String },
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
        let conn = self.write()?;
        let tx = conn.begin()?;
        let Some(entry) = entry(&tx, id)? else {
            return Ok(None);
        };
        // The mail's own raw row would make it look already seen (its
        // dedup key is the Message-ID or the content hash): it goes first.
        delete_entry(&tx, id, entry.raw_id)?;
        let source = parse_source(&entry.source);
        // Kept again: the rollback restores the entry (same id), and only
        // its reason and kind follow this attempt.
        let report = ingest_one(&tx, pipeline, &entry.raw, entry.size, &source, now)?;
        let (kind, reason) = match report {
            IngestReport::Quarantined { reason } => (Kept::Fault, reason),
            IngestReport::Ignored { reason } => (Kept::Ignored, reason),
            report => {
                tx.commit()?;
                return Ok(Some(RetryOutcome::Ingested(report)));
            }
        };
        tx.rollback()?;
        conn.execute(
            "UPDATE quarantine SET reason = ?2, kind = ?3 WHERE id = ?1",
            params![id, reason, kind.as_str()],
        )?;
        Ok(Some(match kind {
            Kept::Fault => RetryOutcome::StillQuarantined { reason },
            Kept::Ignored => RetryOutcome::StillIgnored { reason },
        }))
    }

    /// The kind and reason of a kept mail, by its dedup key (`explain`).
    pub fn kept_reason(&self, dedup_key: &str) -> anyhow::Result<Option<(Kept, String)>> {
        let key = dedup_key
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>');
        self.read(|c| {
            c.query_row(
                "SELECT q.kind, q.reason FROM quarantine q JOIN raw_mails r ON r.id = q.raw_mail_id
                 WHERE r.dedup_key = ?1",
                [key],
                |r| {
                    let kind = match r.get::<_, String>(0)?.as_str() {
                        "ignored" => Kept::Ignored,
                        _ => Kept::Fault,
                    };
                    Ok((kind, r.get(1)?))
                },
            )
            .optional()
        })
    }

    /// The kept mails of one kind, newest first: `Kept::Fault` is
    /// `quarantine list`, `Kept::Ignored` is `ignored list`.
    pub fn kept_list(&self, kind: Kept) -> anyhow::Result<Vec<QuarantineItem>> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT q.id, r.dedup_key, r.size, q.reason, q.created_at
                 FROM quarantine q JOIN raw_mails r ON r.id = q.raw_mail_id
                 WHERE q.kind = ?1 ORDER BY q.id DESC",
            )?;
            let rows = stmt.query_map([kind.as_str()], |r| {
                Ok(QuarantineItem {
                    id: r.get(0)?,
                    dedup_key: r.get(1)?,
                    size: r.get(2)?,
                    reason: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })
    }

    /// Deletes quarantined mail `id` and its stored bytes; `false` when
    /// there is no such entry. A later delivery of the same mail is then
    /// processed afresh.
    pub fn quarantine_drop(&self, id: i64) -> anyhow::Result<bool> {
        let conn = self.write()?;
        let tx = conn.begin()?;
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

fn entry(tx: &Tx, id: i64) -> anyhow::Result<Option<Entry>> {
    tx.query_row(
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
    .optional()
}

/// The quarantine row, and its raw row unless a stored message uses it.
fn delete_entry(tx: &Tx, id: i64, raw_id: i64) -> anyhow::Result<()> {
    tx.execute("DELETE FROM quarantine WHERE id = ?1", [id])?;
    tx.execute(
        "DELETE FROM raw_mails WHERE id = ?1
         AND NOT EXISTS (SELECT 1 FROM messages WHERE raw_mail_id = ?1)
         AND NOT EXISTS (SELECT 1 FROM quarantine WHERE raw_mail_id = ?1)",
        [raw_id],
    )?;
    Ok(())
}

/// The stored `source` text back as a [`MailSource`] (see
/// [`MailSource::parse`]).
fn parse_source(text: &str) -> MailSource {
    MailSource::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_read_back() {
        let MailSource::Imap {
            folder,
            uidvalidity,
            uid,
            ..
        } = parse_source("imap:Support:Old:7:42")
        else {
            panic!("an IMAP source");
        };
        assert_eq!((folder.as_str(), uidvalidity, uid), ("Support:Old", 7, 42));
        assert!(matches!(parse_source("pipe"), MailSource::Pipe));
        assert!(matches!(parse_source("imap:broken"), MailSource::Pipe));
    }
}
