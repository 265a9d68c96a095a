//! Erasure (GDPR Art. 17) of one address: the tickets it requested with
//! everything in them, the person's own mails on other tickets (and the
//! mail postdesk sent because of them), their attachments and the blobs no
//! longer used, links, outbox rows and their sent-journal lines, quarantined
//! mails that name the address, its rows in the auto-reply limit's count,
//! and the address in other tickets' participant lists. The rows go with
//! `secure_delete` on, then a VACUUM and a WAL checkpoint (TRUNCATE) so no
//! old page keeps them. One audit row
//! records the time, the SHA-256 of the lower-cased address and the counts,
//! never the address. Other people's mails that merely mention the address
//! (a Cc header, a quote) are theirs and are kept. Decides nothing else.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::db::{Backend, Tx};
use crate::sql_params as params;
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Store;
use crate::outbound::journal::SentJournal;

/// What an erasure removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ErasureReport {
    pub tickets: usize,
    pub messages: usize,
    pub raw_mails: usize,
    pub attachments: usize,
    pub blobs: usize,
    pub tokens: usize,
    pub outbox: usize,
    pub participants: usize,
    pub quarantined: usize,
    pub journal_entries: usize,
    /// Whether the WAL file was emptied afterwards (a reader of a running
    /// daemon can hold it); `None` in a dry run.
    #[serde(skip)]
    pub wal_truncated: Option<bool>,
}

/// Rows picked for removal; their deletion order follows the foreign keys.
#[derive(Default)]
struct Doomed {
    tickets: Vec<i64>,
    messages: Vec<i64>,
    raw_mails: BTreeSet<i64>,
    quarantine: Vec<i64>,
    outbox: Vec<(i64, String)>,
}

/// PostgreSQL keeps a deleted row's bytes in its pages until they are
/// rewritten: VACUUM FULL rewrites the tables that hold a person's data.
/// (Its WAL segments age out with the server's own recycling.)
const PG_REWRITE: &str = "VACUUM FULL raw_mails, messages, message_search, participants, tickets,
    attachments, outbox, quarantine, access_tokens, recent_automatic_mails";

impl Store {
    /// Erases every trace of `address` that is the person's own data; with
    /// `dry_run` only counts. The caller checks that it is an address.
    pub fn erase_address(
        &self,
        address: &str,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ErasureReport> {
        let address = address.trim().to_lowercase();
        let conn = self.write()?;
        let sqlite = conn.backend() == Backend::Sqlite;
        if sqlite {
            conn.plain().execute_batch("PRAGMA secure_delete = ON")?;
        }
        let result = (|| {
            let tx = conn.begin()?;
            let doomed = pick(&tx, &address)?;
            let mut report = delete(&tx, &address, &doomed)?;
            if dry_run {
                drop(tx); // rolls back
                report.journal_entries = journal_matches(&self.path, &doomed, false)?;
                return Ok(report);
            }
            tx.execute(
                "INSERT INTO erasures (erased_at, address_sha256, counts) VALUES (?1, ?2, ?3)",
                params![now, address_hash(&address), serde_json::to_string(&report)?],
            )?;
            tx.commit()?;
            report.journal_entries = journal_matches(&self.path, &doomed, true)?;
            Ok::<_, anyhow::Error>(report)
        })();
        let mut report = match result {
            Ok(report) => report,
            Err(err) => {
                if sqlite {
                    let _ = conn.plain().execute_batch("PRAGMA secure_delete = OFF");
                }
                return Err(err);
            }
        };
        if !dry_run {
            conn.plain()
                .execute_batch(if sqlite { "VACUUM" } else { PG_REWRITE })
                .context("the rows are erased, but VACUUM failed; run `postdesk erase` again")?;
            if sqlite {
                report.wal_truncated = Some(truncate_wal(&conn.plain())?);
            }
        }
        if sqlite {
            conn.plain().execute_batch("PRAGMA secure_delete = OFF")?;
        }
        Ok(report)
    }
}

/// The audit key: the hex SHA-256 of the lower-cased address.
fn address_hash(address: &str) -> String {
    hex::encode(Sha256::digest(address.trim().to_lowercase().as_bytes()))
}

fn pick(tx: &Tx, address: &str) -> anyhow::Result<Doomed> {
    let mut d = Doomed::default();
    let ints = |sql: &str| -> anyhow::Result<Vec<i64>> {
        let mut stmt = tx.prepare(sql)?;
        let rows = stmt.query_map([address], |r| r.get(0))?;
        rows.collect::<Result<Vec<i64>, _>>()
    };
    d.tickets = ints("SELECT number FROM tickets WHERE lower(requester) = ?1")?;
    // The person's tickets whole, and the person's own mails elsewhere.
    let mut stmt = tx.prepare(
        "SELECT m.id, m.raw_mail_id FROM messages m JOIN tickets t ON t.number = m.ticket_number
         WHERE lower(t.requester) = ?1 OR (m.direction = 'in' AND lower(m.from_address) = ?1)",
    )?;
    for row in stmt.query_map([address], |r| Ok((r.get(0)?, r.get(1)?)))? {
        let (id, raw): (i64, Option<i64>) = row?;
        d.messages.push(id);
        d.raw_mails.extend(raw);
    }
    // Outbox: the person's tickets', mail to the person, and mail sent on
    // another ticket because of the person's mail there (a notification
    // carrying its text: same ticket, written in the same transaction).
    let mut stmt = tx.prepare(
        "SELECT o.id, o.message_id FROM outbox o LEFT JOIN tickets t ON t.number = o.ticket_number
         WHERE lower(t.requester) = ?1
            OR instr(',' || lower(o.recipients) || ',', ',' || ?1 || ',') > 0
            OR o.message_id IN (
                SELECT p.message_id FROM messages m JOIN messages p
                  ON p.ticket_number = m.ticket_number AND p.created_at = m.created_at
                 WHERE m.direction = 'in' AND lower(m.from_address) = ?1
                   AND p.direction = 'out')",
    )?;
    for row in stmt.query_map([address], |r| Ok((r.get(0)?, r.get(1)?)))? {
        d.outbox.push(row?);
    }
    // Quarantined mail was never parsed into rows: the bytes are searched.
    let needle = address.as_bytes();
    // One mail's bytes at a time: the quarantine may hold many large ones.
    let kept: Vec<(i64, i64)> = tx
        .query_map("SELECT id, raw_mail_id FROM quarantine", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    for (id, raw_mail_id) in kept {
        let bytes: Vec<u8> = tx.query_row(
            "SELECT bytes FROM raw_mails WHERE id = ?1",
            [raw_mail_id],
            |r| r.get(0),
        )?;
        if bytes
            .windows(needle.len().max(1))
            .any(|w| w.eq_ignore_ascii_case(needle))
        {
            d.quarantine.push(id);
            d.raw_mails.insert(raw_mail_id);
        }
    }
    Ok(d)
}

fn delete(tx: &Tx, address: &str, d: &Doomed) -> anyhow::Result<ErasureReport> {
    let mut r = ErasureReport::default();
    let mut shas = BTreeSet::new();
    for id in &d.messages {
        let mut stmt = tx.prepare_cached("SELECT sha256 FROM attachments WHERE message_id = ?1")?;
        for sha in stmt.query_map([id], |row| row.get::<_, String>(0))? {
            shas.insert(sha?);
        }
        r.attachments += tx.execute("DELETE FROM attachments WHERE message_id = ?1", [id])?;
    }
    for id in &d.quarantine {
        r.quarantined += tx.execute("DELETE FROM quarantine WHERE id = ?1", [id])?;
    }
    for (id, message_id) in &d.outbox {
        r.outbox += tx.execute("DELETE FROM outbox WHERE id = ?1", [id])?;
        // Its copy among the ticket's messages (outbound ones have no raw).
        r.messages += tx.execute(
            "DELETE FROM messages WHERE message_id = ?1 AND raw_mail_id IS NULL
               AND direction = 'out'",
            [message_id],
        )?;
    }
    for id in &d.messages {
        r.messages += tx.execute("DELETE FROM messages WHERE id = ?1", [id])?;
    }
    for id in &d.raw_mails {
        tx.execute("DELETE FROM quarantine WHERE raw_mail_id = ?1", [id])?;
        r.raw_mails += tx.execute(
            "DELETE FROM raw_mails WHERE id = ?1
               AND NOT EXISTS (SELECT 1 FROM messages WHERE raw_mail_id = ?1)",
            [id],
        )?;
    }
    for sha in &shas {
        r.blobs += tx.execute(
            "DELETE FROM blobs WHERE sha256 = ?1
               AND NOT EXISTS (SELECT 1 FROM attachments WHERE sha256 = ?1)",
            [sha],
        )?;
    }
    let mine = "SELECT number FROM tickets WHERE lower(requester) = ?1";
    r.tokens = tx.execute(
        &format!(
            "DELETE FROM access_tokens WHERE lower(requester) = ?1 OR ticket_number IN ({mine})"
        ),
        [address],
    )?;
    // Only the limit on automatic mail reads these; they are not counted.
    tx.execute(
        "DELETE FROM recent_automatic_mails WHERE lower(recipient) = ?1",
        [address],
    )?;
    r.participants = tx.execute(
        &format!("DELETE FROM participants WHERE lower(address) = ?1 OR ticket_number IN ({mine})"),
        [address],
    )?;
    r.tickets = tx.execute("DELETE FROM tickets WHERE lower(requester) = ?1", [address])?;
    debug_assert_eq!(r.tickets, d.tickets.len());
    Ok(r)
}

/// Counts (and with `remove`, drops) the sent-journal lines of the removed
/// outbox rows. The rewrite goes through a new file and a rename, so a
/// crash leaves the old journal or the new one, never half of one.
fn journal_matches(database: &Path, d: &Doomed, remove: bool) -> anyhow::Result<usize> {
    let ids: BTreeSet<&str> = d.outbox.iter().map(|(_, m)| m.as_str()).collect();
    let lines = SentJournal::beside(database)
        .read()
        .context("cannot read the sent journal")?;
    let (gone, kept): (Vec<String>, Vec<String>) =
        lines.into_iter().partition(|l| ids.contains(l.as_str()));
    if remove && !gone.is_empty() {
        let mut path = database.as_os_str().to_owned();
        path.push(".sent");
        let path = PathBuf::from(path);
        let staged = path.with_extension("sent.erasing");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staged)
            .with_context(|| format!("cannot write {}", staged.display()))?;
        for line in &kept {
            writeln!(file, "{line}")?;
        }
        file.sync_all()?;
        std::fs::rename(&staged, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
    }
    Ok(gone.len())
}

/// Empties the WAL so that it keeps no page from before the erasure; a
/// running daemon's reader may hold it for a moment.
fn truncate_wal(conn: &Tx) -> anyhow::Result<bool> {
    for _ in 0..25 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(false)
}
