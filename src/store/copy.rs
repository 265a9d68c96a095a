//! Moving a desk from SQLite to PostgreSQL (`postdesk migrate-db`): every
//! table of the final schema copied, ids kept, into an empty PostgreSQL
//! database (migrated first by [`Store::connect`]) in one transaction,
//! streamed with `COPY … FROM STDIN (FORMAT binary)`, so memory holds a
//! few rows whatever the desk's size. The SQLite file is opened read-only,
//! after its lock shows no postdesk uses it (mail arriving meanwhile would
//! be left behind). The search index is filled by the target's trigger.
//! Identity sequences and `ticket_numbers` are moved past the copied ids.
//! Before committing, each table's count and a SHA-256 over every raw
//! mail are taken from each side; anything different rolls the whole copy
//! back. Mail left mid-send is settled as a start would settle it (the
//! sent journal's as sent, the rest queued again). This module only moves
//! rows: it decides nothing about them.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use sha2::{Digest, Sha256};

use super::Store;
use super::db::{Param, Value};
use crate::outbound::journal::SentJournal;
use crate::settings::{DatabaseSettings, Secret};
use rows::{RawChecksum, RowHooks, convert};
use source::{hold_exclusive, open_source, sqlite_columns};

/// The copied tables, parents before children (the foreign keys' order).
const TABLES: &[&str] = &[
    "installation",
    "raw_mails",
    "tickets",
    "participants",
    "access_tokens",
    "messages",
    "blobs",
    "attachments",
    "outbox",
    "recent_automatic_mails",
    "imap_checkpoints",
    "quarantine",
    "erasures",
    "smtp_auth_routes",
];

/// The kinds of message the search index holds (migrations' V6, both).
const SEARCHED: &str = "kind IN ('customer', 'agent', 'note', 'list')";

/// One table's rows on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    pub table: String,
    pub source: i64,
    pub target: i64,
}

/// What `migrate-db` copied and what the two sides say.
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// Every copied table, then `message_search` (the search index).
    pub tables: Vec<TableCount>,
    /// Whether the target's search index holds a row for exactly each
    /// message it is for (filled by its trigger during the copy).
    pub search_complete: bool,
    /// SHA-256 over every raw mail, in id order (see `rows::RawChecksum`).
    pub source_checksum: String,
    pub target_checksum: String,
    /// Outbox rows left `sending`: recorded as sent (the sent journal
    /// names them) and queued again (it does not).
    pub settled_sent: usize,
    pub settled_requeued: usize,
    /// Text values PostgreSQL cannot store as they were (a NUL character,
    /// invalid UTF-8), stored with U+FFFD in their place.
    pub repaired_texts: u64,
    /// False when a difference rolled the copy back.
    pub committed: bool,
    pub seconds: f64,
}

impl CopyReport {
    /// Whether every count and the checksum agree.
    pub fn matches(&self) -> bool {
        self.search_complete
            && self.source_checksum == self.target_checksum
            && self.tables.iter().all(|t| t.source == t.target)
    }
}

/// Copies the SQLite desk at `source` into the empty PostgreSQL database
/// at `target_url`. An error leaves the target as it was (migrated).
/// `ca_file` is `database.ca_file`: the target's TLS trusts it too.
pub fn copy_to_postgres(
    source: &Path,
    target_url: &str,
    ca_file: &str,
) -> anyhow::Result<CopyReport> {
    if !source.exists() {
        bail!(
            "the SQLite desk {} does not exist (database.path)",
            source.display()
        );
    }
    let config: postgres::Config = target_url
        .parse()
        .context("--to is not a valid PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DB)")?;
    let _unused = hold_exclusive(source)?;
    let sqlite = open_source(source)?;
    let sent: HashSet<String> = SentJournal::beside(source)
        .read()
        .context("cannot read the sent journal")?
        .into_iter()
        .collect();
    // Creates the tables (and checks the URL) as the daemon would.
    drop(Store::connect(&DatabaseSettings {
        path: source.to_path_buf(),
        url: Secret::new(target_url),
        ca_file: ca_file.to_string(),
    })?);
    let tls = super::db::tls::connector(ca_file)?;
    // The blocking client runs a runtime of its own: never inside a caller's.
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut client = config
                .connect(tls)
                .context("cannot connect to the PostgreSQL database (--to)")?;
            Copier::new(&sqlite, &sent).run(&mut client)
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the copy thread panicked")))
    })
}

/// One copy's state: the source, the journal, what it has found so far.
struct Copier<'a> {
    sqlite: &'a rusqlite::Connection,
    sent: &'a HashSet<String>,
    /// The time a settled send is recorded at, as the store writes times.
    now: String,
    source_sum: RawChecksum,
    report: CopyReport,
}

impl<'a> Copier<'a> {
    fn new(sqlite: &'a rusqlite::Connection, sent: &'a HashSet<String>) -> Copier<'a> {
        let now = match chrono::Utc::now().value() {
            Value::Text(t) => t.into_owned(),
            other => format!("{other:?}"),
        };
        Copier {
            sqlite,
            sent,
            now,
            source_sum: RawChecksum::default(),
            report: CopyReport {
                tables: Vec::new(),
                search_complete: false,
                source_checksum: String::new(),
                target_checksum: String::new(),
                settled_sent: 0,
                settled_requeued: 0,
                repaired_texts: 0,
                committed: false,
                seconds: 0.0,
            },
        }
    }

    fn run(mut self, client: &mut postgres::Client) -> anyhow::Result<CopyReport> {
        let started = Instant::now();
        let mut tx = client.transaction()?;
        refuse_non_empty(&mut tx)?;
        // Its secret (if a daemon made one) signed nothing stored there:
        // the desk's own secret signs every Message-ID and link it sent.
        tx.batch_execute("DELETE FROM installation")?;
        // One snapshot of the desk, whatever reads it.
        self.sqlite.execute_batch("BEGIN")?;
        for table in TABLES {
            let copied = Instant::now();
            let rows = self.copy_table(&mut tx, table)?;
            tracing::info!("Copied {rows} rows of {table} in {:.1?}.", copied.elapsed());
        }
        move_sequences(&mut tx)?;
        self.compare(&mut tx)?;
        self.sqlite.execute_batch("COMMIT")?;
        self.report.committed = self.report.matches();
        if self.report.committed {
            tx.commit()?;
            // Fresh tables have no statistics: until autovacuum's first pass
            // the planner guesses, and the status page ran 500 times slower.
            let analyzed = Instant::now();
            client.batch_execute("ANALYZE")?;
            tracing::info!("Analyzed the copied tables in {:.1?}.", analyzed.elapsed());
        } else {
            tx.rollback()?;
        }
        self.report.seconds = started.elapsed().as_secs_f64();
        Ok(self.report)
    }

    /// Streams one table's rows into the target; returns how many.
    fn copy_table(&mut self, tx: &mut postgres::Transaction, table: &str) -> anyhow::Result<u64> {
        let sqlite = self.sqlite;
        let columns = sqlite_columns(sqlite, table)?;
        let list = columns
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let types: Vec<Type> = tx
            .prepare(&format!("SELECT {list} FROM {table} LIMIT 0"))
            .with_context(|| format!("the PostgreSQL table {table} lacks a column of SQLite's"))?
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        let hooks = RowHooks::new(table, &columns);
        let sink = tx.copy_in(&format!("COPY {table} ({list}) FROM STDIN (FORMAT binary)"))?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        let mut stmt = sqlite.prepare(&format!("SELECT {list} FROM {table} ORDER BY rowid"))?;
        let mut rows = stmt.query([])?;
        let mut copied = 0u64;
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(types.len());
            for (i, ty) in types.iter().enumerate() {
                let value = convert(row.get_ref(i)?, ty, &mut self.report.repaired_texts);
                values
                    .push(value.with_context(|| {
                        format!("{table}.{} of row {}", columns[i], copied + 1)
                    })?);
            }
            self.apply(&hooks, &mut values);
            let refs: Vec<&(dyn ToSql + Sync)> =
                values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            writer
                .write(&refs)
                .with_context(|| format!("cannot copy a row of {table}"))?;
            copied += 1;
        }
        writer
            .finish()
            .with_context(|| format!("cannot copy {table}"))?;
        Ok(copied)
    }

    /// The per-table work on a row: the raw mails' checksum, the outbox's
    /// interrupted sends settled.
    fn apply(&mut self, hooks: &RowHooks, values: &mut [Value<'_>]) {
        // A row of another shape is left out, and the checksums differ.
        if let Some((id, bytes)) = hooks.raw_mail
            && let (Value::Int(id), Value::Blob(bytes)) = (&values[id], &values[bytes])
        {
            self.source_sum.add(*id, &Sha256::digest(bytes));
        }
        let Some(o) = hooks.outbox else { return };
        if !matches!(&values[o.status], Value::Text(s) if s == "sending") {
            return;
        }
        let journalled =
            matches!(&values[o.message_id], Value::Text(id) if self.sent.contains(id.as_ref()));
        if journalled {
            // As `Store::recover_sent` would at the next start.
            values[o.status] = Value::Text("sent".into());
            values[o.sent_at] = Value::Text(Cow::Owned(self.now.clone()));
            if let Value::Int(n) = &mut values[o.attempts] {
                *n += 1;
            }
            self.report.settled_sent += 1;
        } else {
            // As `Store::requeue_interrupted` would.
            values[o.status] = Value::Text("pending".into());
            self.report.settled_requeued += 1;
        }
        // The claim was the SQLite daemon's, which is gone.
        if let Some(claimed_by) = o.claimed_by {
            values[claimed_by] = Value::Null;
        }
    }

    /// Counts and checksums from each side into the report.
    fn compare(&mut self, tx: &mut postgres::Transaction) -> anyhow::Result<()> {
        for table in TABLES.iter().copied().chain(["message_search"]) {
            let sql = format!("SELECT count(*) FROM {table}");
            let source: i64 = self.sqlite.query_row(&sql, [], |r| r.get(0))?;
            let target: i64 = tx.query_one(&sql, &[])?.get(0);
            self.report.tables.push(TableCount {
                table: table.into(),
                source,
                target,
            });
        }
        // Every message the index is for has its row, and no other has.
        let complete = format!(
            "SELECT NOT EXISTS (SELECT 1 FROM messages m WHERE {SEARCHED} AND NOT EXISTS
                    (SELECT 1 FROM message_search s WHERE s.message_id = m.id))
                AND (SELECT count(*) FROM message_search)
                  = (SELECT count(*) FROM messages WHERE {SEARCHED})"
        );
        self.report.search_complete = tx.query_one(&complete, &[])?.get(0);
        self.report.source_checksum = std::mem::take(&mut self.source_sum).hex();
        let mut target = RawChecksum::default();
        let portal = tx.bind("SELECT id, sha256(bytes) FROM raw_mails ORDER BY id", &[])?;
        loop {
            let rows = tx.query_portal(&portal, 10_000)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                target.add(row.get(0), row.get::<_, &[u8]>(1));
            }
        }
        self.report.target_checksum = target.hex();
        Ok(())
    }
}

/// Refuses a target that holds rows in any copied table (the installation
/// aside): the copy keeps ids and would collide, or mix two desks.
fn refuse_non_empty(tx: &mut postgres::Transaction) -> anyhow::Result<()> {
    let mut held = Vec::new();
    for table in TABLES.iter().filter(|t| **t != "installation") {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
            .get(0);
        if n > 0 {
            held.push(format!("{table}: {n}"));
        }
    }
    if !held.is_empty() {
        bail!(
            "the PostgreSQL database is not empty ({}); migrate-db copies into an empty \
             database only: create a new one (createdb) and name it in --to",
            held.join(", ")
        );
    }
    Ok(())
}

/// Every identity sequence, and `ticket_numbers`, past the copied ids.
fn move_sequences(tx: &mut postgres::Transaction) -> anyhow::Result<()> {
    let identities = tx.query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
          WHERE table_schema = current_schema() AND is_identity = 'YES'",
        &[],
    )?;
    for row in identities {
        let (table, column): (String, String) = (row.get(0), row.get(1));
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), m)
                   FROM (SELECT max(\"{column}\") AS m FROM \"{table}\") s WHERE m IS NOT NULL"
            ),
            &[&table, &column],
        )?;
    }
    tx.execute(
        "SELECT setval('ticket_numbers', m)
           FROM (SELECT max(number) AS m FROM tickets) s WHERE m IS NOT NULL",
        &[],
    )?;
    Ok(())
}

mod rows;
mod source;
#[cfg(test)]
mod tests;
