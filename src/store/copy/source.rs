//! `copy`'s SQLite side: the desk's lock taken exclusively (no postdesk
//! may write while it is copied), the file opened read-only and checked
//! (this postdesk's schema version, no table the copy does not know), a
//! table's columns. Reads only.

use std::fs::{File, TryLockError};
use std::path::Path;

use anyhow::{Context, bail};

use super::TABLES;

/// The desk's lock, held exclusively for the copy; none is needed when
/// no postdesk ever opened the file (the lock file does not exist).
pub(super) fn hold_exclusive(database: &Path) -> anyhow::Result<Option<File>> {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    let file = match File::open(&name) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).context(format!("cannot open {}", name.display())),
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => bail!(
            "the SQLite desk {} is in use by a running postdesk (it holds {}): stop the \
             daemon (and MTA pipes) first, or mail arriving during the copy is left behind",
            database.display(),
            name.display()
        ),
        Err(TryLockError::Error(err)) => Err(err).context("cannot lock the SQLite desk"),
    }
}

/// The desk, read-only, checked to be at this postdesk's schema version
/// and to hold no table the copy does not know.
pub(super) fn open_source(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the SQLite desk {}", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let runner = crate::store::embedded_sqlite::migrations::runner();
    let expected = runner
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max();
    let version: Option<i64> = conn
        .query_row(
            "SELECT max(version) FROM refinery_schema_history",
            [],
            |r| r.get(0),
        )
        .context("the file has no postdesk schema history; is it a postdesk database?")?;
    if version != expected {
        bail!(
            "the SQLite desk is at schema version {}, this postdesk's is {}: run `postdesk \
             migrate` on it first (with database.url unset)",
            version.unwrap_or(0),
            expected.unwrap_or(0)
        );
    }
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for name in names {
        let name = name?;
        if !TABLES.contains(&name.as_str()) && !not_copied(&name) {
            bail!("the SQLite desk has a table migrate-db does not know: {name}");
        }
    }
    drop(stmt);
    Ok(conn)
}

/// SQLite's own tables, the migration history (the target keeps its own),
/// the FTS5 index with its shadow tables and its backlog (empty between
/// transactions; the target's trigger fills its index), and the running daemons' state (leases, signs of life), which
/// the daemons on PostgreSQL make for themselves.
pub(super) fn not_copied(table: &str) -> bool {
    table.starts_with("sqlite_")
        || table == "refinery_schema_history"
        || table == "mailbox_leases"
        || table == "instances"
        || table == "message_search"
        || table == "search_backlog"
        || table.starts_with("message_search_")
}

/// A table's columns as SQLite has them, in order.
pub(super) fn sqlite_columns(
    conn: &rusqlite::Connection,
    table: &str,
) -> anyhow::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let names = stmt.query_map([], |r| r.get(0))?;
    let names: Vec<String> = names.collect::<Result<_, _>>()?;
    if names.is_empty() {
        bail!("the SQLite desk has no table {table}");
    }
    Ok(names)
}
