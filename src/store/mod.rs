//! Store: the only place that speaks SQL. SQLite in WAL mode with a busy
//! timeout; one writer connection behind a mutex (each API call is one
//! transaction) and a small pool of reader connections. The API is named
//! by intent (`ingest_batch`, `claim_outbox`, `record_delivery`,
//! `ticket_page`) so that another backend could sit behind it. Calls are
//! blocking: async callers use `spawn_blocking`.

mod backup;
mod budget;
mod checkpointer;
mod erase;
mod inflight;
mod ingest;
mod lifecycle;
mod links;
mod lookup;
mod outbox;
mod pages;
mod quarantine;
mod search;
mod smtp_auth;
mod ticket_lists;
mod tickets;
mod write;

pub use backup::{BackupReport, RestoreReport, backup, restore};
pub use erase::ErasureReport;
pub use ingest::{IngestReport, MailSource};
pub use links::RotatedLinks;
pub use outbox::{DeliveryResult, OutboxEntry, OutboxItem, OutboxRetry};
pub use pages::{AgentTicket, AttachmentFile, StoreMetrics};
pub use quarantine::{Kept, RetryOutcome};
pub use search::{QueryError, SearchHit, SearchQuery, Snippet, SnippetPart};
pub use smtp_auth::SmtpAuthFailure;
pub use ticket_lists::{
    FilterCounts, PAGE_SIZE, RequesterPage, TicketFilter, TicketListPage, TicketRow,
};
pub use tickets::{
    AttachmentView, DeliveryView, Explanation, MessageView, QuarantineItem, TicketDetail,
    TicketSummary,
};

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Reader connections kept open for reuse; callers that bound their reads
/// in flight to this many never open one per request.
pub const READER_POOL: usize = 8;

/// A handle on the database; cheap to share behind an `Arc`.
pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Last: its connection, closed after the others, checkpoints at exit.
    checkpointer: checkpointer::Checkpointer,
    /// A shared lock on `DATABASE.lock` for the store's lifetime: `restore`
    /// takes it exclusively, so it never replaces a database in use.
    _in_use: std::fs::File,
}

/// The writer connection, held; releasing it wakes the checkpointer.
struct WriteGuard<'a> {
    conn: MutexGuard<'a, Connection>,
    checkpointer: &'a checkpointer::Checkpointer,
}

impl std::ops::Deref for WriteGuard<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.checkpointer.committed();
    }
}

/// Creates a missing database file readable by its owner only: it holds
/// every customer's mail, whatever the process umask (SQLite gives its
/// `-wal` and `-shm` files the database file's mode).
fn create_private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => {
            Err(err).with_context(|| format!("cannot create the database {}", path.display()))
        }
    }
}

impl Store {
    /// Opens (or creates) the database and runs pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        let in_use = backup::hold_shared(path)?;
        create_private(path)?;
        let mut writer = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        configure(&writer)?;
        // Ingest runs about 20 statements per mail; keep them all prepared.
        writer.set_prepared_statement_cache_capacity(64);
        // A batch of mail (raw bytes, attachments, outbox rows) is a few MB:
        // with the default 2 MB cache SQLite spills pages to the WAL in
        // mid-transaction and rewrites them at commit. 4 MB avoids most of
        // that (8 MB was no faster and costs RSS).
        writer.pragma_update(None, "cache_size", -4096)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .context("cannot switch the database to WAL mode")?;
        embedded::migrations::runner()
            .set_grouped(true)
            .run(&mut writer)
            .context("cannot migrate the database")?;
        // Checkpoints run on their own thread (see `checkpointer`).
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = checkpointer::Checkpointer::start(path)?;
        Ok(Store {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            checkpointer,
            _in_use: in_use,
        })
    }

    /// Runs pending migrations only; returns how many were applied.
    pub fn migrate(path: &Path) -> anyhow::Result<usize> {
        let _in_use = backup::hold_shared(path)?;
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        configure(&conn)?;
        let report = embedded::migrations::runner()
            .set_grouped(true)
            .run(&mut conn)
            .context("cannot migrate the database")?;
        Ok(report.applied_migrations().len())
    }

    fn write(&self) -> WriteGuard<'_> {
        // A panic while holding the lock leaves SQLite consistent (the
        // transaction rolls back on drop), so a poisoned lock is usable.
        WriteGuard {
            conn: self.writer.lock().unwrap_or_else(|p| p.into_inner()),
            checkpointer: &self.checkpointer,
        }
    }

    /// Runs `f` on a reader connection from the pool.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .context("cannot open a reader connection")?;
                configure(&conn)?;
                // No mmap_size: mapping the database saved ~17% of the status
                // page's time at 100,000 tickets, but showed the mapped file
                // as the process's RSS (5.3 GB in the benchmark), which
                // operators and cgroup limits read as its memory.
                // Room for every statement the pages prepare (more than the
                // default 16), so none is prepared anew after an eviction.
                conn.set_prepared_statement_cache_capacity(64);
                conn
            }
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        result
    }

    /// Gives the tickets stored before queues existed (queue `''`, from
    /// migration V5) to `first`, the first queue's name; returns how many.
    pub fn adopt_unqueued_tickets(&self, first: &str) -> anyhow::Result<usize> {
        let conn = self.write();
        Ok(conn.execute("UPDATE tickets SET queue = ?1 WHERE queue = ''", [first])?)
    }

    /// The HMAC secret kept in the database, made on first use.
    pub fn installation_secret(&self) -> anyhow::Result<String> {
        let conn = self.write();
        let existing: Option<String> = conn
            .query_row(
                "SELECT value FROM installation WHERE key = 'secret'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(secret) = existing {
            return Ok(secret);
        }
        let secret = format!(
            "{}{}",
            crate::tokens::random_token()?,
            crate::tokens::random_token()?
        );
        conn.execute(
            "INSERT INTO installation (key, value) VALUES ('secret', ?1)",
            [&secret],
        )?;
        Ok(secret)
    }

    /// The committed IMAP checkpoint of a mailbox.
    pub fn checkpoint(&self, mailbox: &str) -> anyhow::Result<Option<crate::imap::Checkpoint>> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT uidvalidity, last_uid FROM imap_checkpoints WHERE mailbox = ?1",
                [mailbox],
                |r| {
                    Ok(crate::imap::Checkpoint {
                        uidvalidity: r.get(0)?,
                        last_uid: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
    }
}

fn configure(conn: &Connection) -> anyhow::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    // The bundled SQLite has STAT4, which re-prepares a cached statement
    // whenever a new binding might change its plan: that was ~30% of the
    // status page's time. Our queries have one good plan each.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // FULL: a mail is flagged on the server right after commit, so the
    // commit must survive a power cut, not only a crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_new_database_and_its_wal_are_readable_by_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.db");
        let store = Store::open(&path).unwrap();
        store.installation_secret().unwrap();
        for file in [path.clone(), path.with_extension("db-wal")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }
}
