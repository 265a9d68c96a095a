//! Backup and restore: an online copy of the database (SQLite's backup API,
//! one read transaction, so a running daemon keeps writing) checked with
//! `integrity_check`, with the sent journal (`DATABASE.sent`) beside it;
//! and the way back, which refuses a database in use. "In use" is a lock
//! file, `DATABASE.lock`: every [`Store`](super::Store) holds a shared
//! `flock` on it for its lifetime, `restore` takes it exclusively. This
//! module owns those files; it must not read or change rows.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// What a backup or a restore copied, and what the check said.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub tickets: i64,
    pub mails: i64,
    pub bytes: u64,
    pub journal_entries: usize,
    /// `ok`, or SQLite's list of problems.
    pub integrity: String,
}

/// A restore's report is a backup's, read back from the restored copy.
pub type RestoreReport = BackupReport;

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tickets, {} mails, {} bytes, {} sent-journal entries; integrity check: {}",
            self.tickets, self.mails, self.bytes, self.journal_entries, self.integrity
        )
    }
}

/// The file whose lock says a database is in use: `DATABASE.lock`.
fn lock_path(database: &Path) -> PathBuf {
    beside(database, ".lock")
}

fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn open_lock(database: &Path) -> anyhow::Result<File> {
    let path = lock_path(database);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}

/// An exclusive lock on `DATABASE.daemon.lock` for a daemon's lifetime
/// (PostgreSQL: several daemons share the database, but each needs its own
/// files beside `database.path`: the sent journal, the in-flight marker).
pub fn hold_daemon_files(database: &Path) -> anyhow::Result<File> {
    let mut name = database.as_os_str().to_os_string();
    name.push(".daemon.lock");
    let path = std::path::PathBuf::from(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => bail!(
            "another postdesk daemon on this host uses database.path {}: give each daemon its own \
             (its sent journal and in-flight marker live beside it)",
            database.display()
        ),
        Err(TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// A shared lock held while a store uses `database`. It fails (rather than
/// waits) while a restore replaces the database, so that an MTA pipe gets
/// a temporary failure and retries.
pub(super) fn hold_shared(database: &Path) -> anyhow::Result<File> {
    let file = open_lock(database)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => bail!(
            "the database {} is being restored; try again when `postdesk restore` has finished",
            database.display()
        ),
        Err(TryLockError::Error(err)) => {
            Err(err).with_context(|| format!("cannot lock {}", lock_path(database).display()))
        }
    }
}

/// Copies the database at `database` to `target` (never overwriting it)
/// and its sent journal to `TARGET.sent`, while the daemon may be running.
pub fn backup(database: &Path, target: &Path) -> anyhow::Result<BackupReport> {
    let journal_target = beside(target, ".sent");
    for path in [target, journal_target.as_path()] {
        if path.exists() {
            bail!(
                "{} already exists; postdesk backup never overwrites a file",
                path.display()
            );
        }
    }
    let source = Connection::open_with_flags(
        database,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open the database {}", database.display()))?;
    source.busy_timeout(Duration::from_secs(5))?;
    let partial = Partial::create(beside(target, &format!(".partial-{}", std::process::id())))?;
    copy_database(&source, &partial.0, "DELETE")?;
    drop(source);
    // After the snapshot: a `sending` row in the copy whose Message-ID the
    // server accepted is then in the copied journal (it is written first).
    let journal = read_journal(&beside(database, ".sent"))?;
    let report = inspect(&partial.0, journal.len())?;
    if report.integrity != "ok" {
        bail!(
            "the copy of {} failed its integrity check: {}",
            database.display(),
            report.integrity
        );
    }
    write_new(&journal_target, &journal.concat())?;
    if let Err(err) = std::fs::hard_link(&partial.0, target) {
        let _ = std::fs::remove_file(&journal_target);
        return Err(err).with_context(|| format!("cannot create {}", target.display()));
    }
    sync_parent(target)?;
    Ok(report)
}

/// Replaces the database at `database` with the backup `source` (and its
/// journal), after checking it; refuses a database in use, and an
/// existing one unless `force`.
pub fn restore(source: &Path, database: &Path, force: bool) -> anyhow::Result<RestoreReport> {
    let lock = open_lock(database)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => bail!(
            "the database {} is in use by a running postdesk (it holds {}): stop it first",
            database.display(),
            lock_path(database).display()
        ),
        Err(TryLockError::Error(err)) => return Err(err).context("cannot lock the database"),
    }
    if database.exists() && !force {
        bail!(
            "{} already exists; add --force to replace it with the backup",
            database.display()
        );
    }
    let journal = read_journal(&beside(source, ".sent"))?;
    let checked = inspect(source, journal.len())?;
    if checked.integrity != "ok" {
        bail!(
            "the backup {} failed its integrity check, nothing was changed: {}",
            source.display(),
            checked.integrity
        );
    }
    let from = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open the backup {}", source.display()))?;
    if !database.exists() {
        // Customer mail: readable by the owner only, whatever the umask.
        Partial::create(database.to_path_buf())?.keep();
    }
    let report = (|| {
        copy_database(&from, database, "WAL")?;
        let journal_path = beside(database, ".sent");
        let staged = beside(database, ".sent.partial");
        let _ = std::fs::remove_file(&staged);
        write_new(&staged, &journal.concat())?;
        std::fs::rename(&staged, &journal_path)
            .with_context(|| format!("cannot replace {}", journal_path.display()))?;
        sync_parent(database)?;
        inspect(database, journal.len())
    })()?;
    drop(lock);
    Ok(report)
}

/// Copies every page of `from` into the database at `to` in one step (one
/// read transaction: a consistent snapshot, never restarted by a writer),
/// then leaves `to` in `journal_mode` with nothing left in a WAL.
fn copy_database(from: &Connection, to: &Path, journal_mode: &str) -> anyhow::Result<()> {
    let mut dest = Connection::open(to).with_context(|| format!("cannot open {}", to.display()))?;
    dest.busy_timeout(Duration::from_secs(5))?;
    dest.pragma_update(None, "synchronous", "FULL")?;
    {
        let copy = Backup::new(from, &mut dest)?;
        let mut tries = 0;
        loop {
            match copy.step(-1)? {
                StepResult::Done => break,
                StepResult::More => {}
                // Busy or locked: another connection holds a lock it needs.
                _ if tries < 50 => std::thread::sleep(Duration::from_millis(100)),
                _ => bail!("the database stayed locked; the copy was not made"),
            }
            tries += 1;
        }
    }
    dest.pragma_update(None, "journal_mode", journal_mode)?;
    if journal_mode.eq_ignore_ascii_case("WAL") {
        dest.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    dest.close().map_err(|(_, err)| err)?;
    Ok(())
}

/// `integrity_check` and the counts of a database file.
fn inspect(path: &Path, journal_entries: usize) -> anyhow::Result<BackupReport> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let problems = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|err| anyhow::anyhow!("{} is not a readable database: {err}", path.display()))?;
    let integrity = problems.join("; ");
    let count = |table: &str| -> anyhow::Result<i64> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .with_context(|| format!("{} is not a postdesk database", path.display()))
    };
    let (tickets, mails) = if integrity == "ok" {
        (count("tickets")?, count("raw_mails")?)
    } else {
        (0, 0)
    };
    let bytes = std::fs::metadata(path)?.len();
    Ok(BackupReport {
        tickets,
        mails,
        bytes,
        journal_entries,
        integrity,
    })
}

/// The journal's lines, each with its newline; none when there is no file.
fn read_journal(path: &Path) -> anyhow::Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a new file (owner-only), synced; fails if it exists.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn sync_parent(path: &Path) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()?;
    Ok(())
}

/// A file made owner-only and removed again unless kept.
struct Partial(PathBuf);

impl Partial {
    fn create(path: PathBuf) -> anyhow::Result<Partial> {
        write_new(&path, "")?;
        Ok(Partial(path))
    }

    fn keep(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
            let _ = std::fs::remove_file(beside(&self.0, "-journal"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_on_the_same_database_path_is_refused_until_the_first_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("postdesk.db");
        let first = hold_daemon_files(&path).unwrap();
        let err = hold_daemon_files(&path).unwrap_err().to_string();
        assert!(err.contains("give each daemon its own"), "{err}");
        assert!(hold_daemon_files(&dir.path().join("other.db")).is_ok());
        drop(first);
        assert!(hold_daemon_files(&path).is_ok());
    }

    #[test]
    fn no_store_opens_while_a_restore_holds_the_lock_and_none_is_replaced_while_open() {
        if crate::store::test_postgres::admin_url().is_some() {
            eprintln!("SQLite only: backup and restore copy the SQLite file");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("p.db");
        let restoring = open_lock(&db).unwrap();
        restoring.try_lock().unwrap();
        let err = crate::store::Store::open(&db).err().expect("refused");
        assert!(err.to_string().contains("being restored"), "{err}");
        drop(restoring);

        let store = crate::store::Store::open(&db).unwrap();
        let backup_file = dir.path().join("b.db");
        backup(&db, &backup_file).unwrap();
        let err = restore(&backup_file, &db, true).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(store);
        assert_eq!(restore(&backup_file, &db, true).unwrap().integrity, "ok");
    }
}
