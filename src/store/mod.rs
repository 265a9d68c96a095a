//! Store: the only place that speaks SQL. The API is named by intent
//! (`ingest_batch`, `claim_outbox`, `record_delivery`, `ticket_page`),
//! each call one transaction, and its code is written once for both
//! backends over the portable surface of `db` (a `Tx` with `?N`
//! placeholders, savepoints as SQL): the savepoint-per-mail orchestration
//! of ingest, status changes and the rest decide the same way on either.
//! Where the SQL must differ it branches on `Tx::backend` next to each
//! other (search, outbox claims, erasure's file hygiene, ticket numbers).
//! SQLite: WAL, one writer connection behind a mutex, a pool of readers.
//! PostgreSQL: the same shape (one writer per daemon, readers), other
//! daemons writing beside it in their own transactions. Calls are
//! blocking: async callers use `spawn_blocking` (the one exception, a
//! customer page's short read on SQLite, is `web::read_page`'s).

mod backup;
mod budget;
mod checkpointer;
mod copy;
pub(crate) mod db;
mod erase;
mod inflight;
mod ingest;
mod leases;
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

#[cfg(test)]
#[path = "shared_tests.rs"]
mod shared_tests;

pub use backup::{BackupReport, RestoreReport, backup, hold_daemon_files, restore};
pub use copy::{CopyReport, TableCount, copy_to_postgres};
pub use erase::ErasureReport;
pub use ingest::{IngestReport, MailSource};
pub use leases::LeaseHolder;
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
use rusqlite::{Connection, OpenFlags};

pub use db::Backend;
use db::{Conn, OptionalExtension, PgConn, Tx};

mod embedded_sqlite {
    refinery::embed_migrations!("migrations/sqlite");
}

mod embedded_postgres {
    refinery::embed_migrations!("migrations/postgres");
}

/// Reader connections kept open for reuse; callers that bound their reads
/// in flight to this many never open one per request.
pub const READER_POOL: usize = 8;

/// Where the database is: a SQLite file, or a PostgreSQL server.
enum Engine {
    Sqlite,
    Postgres(Box<postgres::Config>, db::tls::Tls),
}

/// A handle on the database; cheap to share behind an `Arc`.
pub struct Store {
    /// The SQLite file, or (PostgreSQL) the path files kept beside the
    /// database are placed by (the sent journal, the in-flight marker).
    path: PathBuf,
    engine: Engine,
    /// This daemon's name among those sharing the database (host, pid and
    /// a random part): it holds leases and claims outbox rows.
    instance: String,
    /// One writer at a time in this process; with PostgreSQL, other
    /// processes write beside it (their own transactions).
    writer: Mutex<Option<Conn>>,
    readers: Mutex<Vec<Conn>>,
    /// The batch an intake will hand over next, prepared ahead.
    next_batch: budget::NextBatch,
    /// Last: its connection, closed after the others, checkpoints at exit.
    /// SQLite only.
    checkpointer: Option<checkpointer::Checkpointer>,
    /// A shared lock on `DATABASE.lock` for the store's lifetime: `restore`
    /// takes it exclusively, so it never replaces a database in use.
    _in_use: Option<std::fs::File>,
}

/// The writer connection, held; releasing it wakes the checkpointer.
struct WriteGuard<'a> {
    conn: MutexGuard<'a, Option<Conn>>,
    checkpointer: Option<&'a checkpointer::Checkpointer>,
}

impl std::ops::Deref for WriteGuard<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // `write` fills the slot before handing out the guard.
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("the writer slot is filled"))
    }
}

impl WriteGuard<'_> {
    /// Begins a write transaction. On SQLite it indexes the messages it
    /// wrote for search just before it commits (`search::index_backlog`),
    /// once for the whole transaction, not in each mail's savepoint.
    fn begin(&self) -> anyhow::Result<Tx<'_>> {
        let before_commit: Option<db::BeforeCommit> = match self.backend() {
            db::Backend::Sqlite => Some(search::index_backlog),
            db::Backend::Postgres => None,
        };
        self.begin_with(before_commit)
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(checkpointer) = self.checkpointer {
            // No transaction is open: each `Tx` borrowed this guard.
            if let Some(Conn::Lite(writer)) = self.conn.as_ref() {
                checkpointer.restart_if_wanted(writer);
            }
            checkpointer.committed();
        }
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
    /// Opens the database the settings name: PostgreSQL when
    /// `database.url` is set, else the SQLite file at `database.path`.
    pub fn connect(settings: &crate::settings::DatabaseSettings) -> anyhow::Result<Store> {
        if settings.url.is_empty() {
            return Store::open(&settings.path);
        }
        let mut config: postgres::Config = settings
            .url
            .expose()
            .parse()
            .context("database.url is not a valid PostgreSQL URL")?;
        // A server that vanishes (a partition, a failover) must fail our
        // statements within seconds, not hang them: a mailbox's lease
        // would expire while its reader waits. The URL may set its own.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(10));
        let store = Store {
            path: settings.path.clone(),
            engine: Engine::Postgres(Box::new(config), db::tls::connector(&settings.ca_file)?),
            instance: instance_name()?,
            writer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            next_batch: budget::NextBatch::default(),
            checkpointer: None,
            _in_use: None,
        };
        store.migrate_postgres()?;
        Ok(store)
    }

    /// Runs pending migrations on the database the settings name; returns
    /// how many were applied.
    pub fn migrate_database(settings: &crate::settings::DatabaseSettings) -> anyhow::Result<usize> {
        if settings.url.is_empty() {
            return Store::migrate(&settings.path);
        }
        let store = Store::connect(settings)?;
        store.migrate_postgres()
    }

    fn migrate_postgres(&self) -> anyhow::Result<usize> {
        let conn = self.open_conn()?;
        let Conn::Pg(pg) = &conn else {
            anyhow::bail!("not a PostgreSQL store");
        };
        let applied = pg.run(|client| -> anyhow::Result<usize> {
            // Several daemons may start at once: one migrates, the others wait.
            client.batch_execute("SELECT pg_advisory_lock(7275636)")?;
            let report = embedded_postgres::migrations::runner()
                .set_grouped(true)
                .run(client)
                .context("cannot migrate the PostgreSQL database");
            client.batch_execute("SELECT pg_advisory_unlock(7275636)")?;
            Ok(report?.applied_migrations().len())
        })??;
        Ok(applied)
    }

    /// This daemon's name among those sharing the database.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Which database this store speaks.
    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Sqlite => Backend::Sqlite,
            Engine::Postgres(..) => Backend::Postgres,
        }
    }

    /// Opens (or creates) the SQLite database and runs pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        #[cfg(test)]
        if let Some(store) = test_postgres::store_beside(path)? {
            return Ok(store);
        }
        Store::open_file(path)
    }

    /// [`Store::open`] on the SQLite file itself, whatever the tests'
    /// backend (tests of SQLite-only paths use it).
    pub(crate) fn open_file(path: &Path) -> anyhow::Result<Store> {
        let in_use = backup::hold_shared(path)?;
        create_private(path)?;
        let mut writer = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        configure(&writer)?;
        // Ingest runs about 20 statements per mail; keep them all prepared.
        writer.set_prepared_statement_cache_capacity(64);
        // A batch holds at most 1 MB of fetched mail (imap::BATCH_BYTES) or
        // one larger mail, so a cache of a few MiB holds what an everyday
        // batch changes (a large mail spills to the WAL before its commit,
        // as it would at any size we can afford). With 32 MB batches 4 MiB
        // was needed; with 1 MB batches 4 MiB was ~3% faster than 2 MiB and
        // cost ~2 MB of peak RSS (issue 16: 29.5 vs 31.5 MB), and at
        // 100,000 tickets the warm probe was 0.81 against 0.90 ms per mail
        // (one run each). 1.5 MiB since the next batch is prepared while
        // one commits (`budget::NextBatch`), which costs ~1 MB of peak RSS:
        // it gives back ~0.5 MB for ~3% of the rate (docs/performance.md,
        // the fifteenth pass).
        writer.pragma_update(None, "cache_size", -1536)?;
        // Each mail's savepoint journals the pages it changes that the
        // batch had changed before; in a temporary file that was ~5% of
        // ingest's CPU in write(2). In memory it is a few pages a mail.
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .context("cannot switch the database to WAL mode")?;
        migrate_sqlite(&mut writer)?;
        // Checkpoints run on their own thread (see `checkpointer`).
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = checkpointer::Checkpointer::start(path)?;
        Ok(Store {
            path: path.to_path_buf(),
            engine: Engine::Sqlite,
            instance: instance_name()?,
            writer: Mutex::new(Some(Conn::Lite(writer))),
            readers: Mutex::new(Vec::new()),
            next_batch: budget::NextBatch::default(),
            checkpointer: Some(checkpointer),
            _in_use: Some(in_use),
        })
    }

    /// Runs pending SQLite migrations only; returns how many were applied.
    pub fn migrate(path: &Path) -> anyhow::Result<usize> {
        let _in_use = backup::hold_shared(path)?;
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        configure(&conn)?;
        migrate_sqlite(&mut conn)
    }

    /// A new connection of this store's kind (SQLite: read-only).
    fn open_conn(&self) -> anyhow::Result<Conn> {
        match &self.engine {
            Engine::Sqlite => {
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
                Ok(Conn::Lite(conn))
            }
            Engine::Postgres(config, tls) => {
                Ok(Conn::Pg(PgConn::connect((**config).clone(), tls.clone())?))
            }
        }
    }

    fn write(&self) -> anyhow::Result<WriteGuard<'_>> {
        // A panic while holding the lock leaves the database consistent (the
        // transaction rolls back on drop), so a poisoned lock is usable.
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // A PostgreSQL connection lost with its server is replaced.
        if !conn.as_ref().is_some_and(Conn::is_usable) {
            *conn = Some(self.open_conn()?);
        }
        Ok(WriteGuard {
            conn,
            checkpointer: self.checkpointer.as_ref(),
        })
    }

    /// Runs `f` on a reader connection from the pool.
    fn read<T>(&self, f: impl Fn(&Tx) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) if conn.is_usable() => conn,
            _ => self.open_conn()?,
        };
        let mut result = f(&conn.plain());
        // A pooled PostgreSQL connection learns of a server restart on its
        // first use: read once more on a new one instead of failing a page.
        // The server's "terminating connection" can reach us before the
        // client has seen its socket close (a CI run failed so), so on
        // PostgreSQL any transient error of a read is tried once more, on a
        // fresh connection; the old one is dropped. Reads repeat safely.
        let retry = !conn.is_usable() || conn.backend() == Backend::Postgres;
        let conn = match result {
            Err(ref err) if retry && db::is_transient(err) => {
                let fresh = self.open_conn()?;
                result = f(&fresh.plain());
                fresh
            }
            _ => conn,
        };
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < READER_POOL && conn.is_usable() {
            pool.push(conn);
        }
        result
    }

    /// Gives the tickets stored before queues existed (queue `''`, from
    /// migration V5) to `first`, the first queue's name; returns how many.
    pub fn adopt_unqueued_tickets(&self, first: &str) -> anyhow::Result<usize> {
        let conn = self.write()?;
        conn.execute("UPDATE tickets SET queue = ?1 WHERE queue = ''", [first])
    }

    /// The HMAC secret kept in the database, made on first use.
    pub fn installation_secret(&self) -> anyhow::Result<String> {
        let conn = self.write()?;
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
        // Daemons starting together on a new database: the first one's
        // secret stays and every one reads it back.
        conn.execute(
            "INSERT INTO installation (key, value) VALUES ('secret', ?1)
             ON CONFLICT (key) DO NOTHING",
            [&secret],
        )?;
        conn.query_row(
            "SELECT value FROM installation WHERE key = 'secret'",
            [],
            |r| r.get(0),
        )
    }

    /// The committed IMAP checkpoint of a mailbox.
    pub fn checkpoint(&self, mailbox: &str) -> anyhow::Result<Option<crate::imap::Checkpoint>> {
        self.read(|c| {
            c.query_row(
                "SELECT uidvalidity, last_uid FROM imap_checkpoints WHERE mailbox = ?1",
                [mailbox],
                |r| {
                    Ok(crate::imap::Checkpoint {
                        uidvalidity: r.get(0)?,
                        last_uid: r.get(1)?,
                    })
                },
            )
            .optional()
        })
    }
}

/// `host:pid:random`, readable in `/healthz` and unique per start.
fn instance_name() -> anyhow::Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let random = crate::tokens::random_token()?;
    Ok(format!(
        "{}:{}:{}",
        host.trim(),
        std::process::id(),
        random.get(..6).unwrap_or(&random)
    ))
}

/// Unit tests run on PostgreSQL too when `POSTDESK_TEST_POSTGRES` holds
/// an admin URL (`scripts/test` does so): each store opened in a test gets
/// a fresh database there instead of its SQLite file.
#[cfg(test)]
pub(crate) mod test_postgres {
    use super::*;

    pub fn admin_url() -> Option<String> {
        std::env::var("POSTDESK_TEST_POSTGRES")
            .ok()
            .filter(|u| !u.is_empty())
    }

    pub fn store_beside(path: &Path) -> anyhow::Result<Option<Store>> {
        let Some(url) = fresh_database()? else {
            return Ok(None);
        };
        let settings = crate::settings::DatabaseSettings {
            path: path.to_path_buf(),
            url: crate::settings::Secret::new(url),
            ca_file: String::new(),
        };
        Store::connect(&settings).map(Some)
    }

    /// The URL of a new, empty database of the test cluster, if any.
    pub fn fresh_database() -> anyhow::Result<Option<String>> {
        let Some(admin) = admin_url() else {
            return Ok(None);
        };
        let name = format!("pdu_{}", crate::tokens::random_token()?);
        let create = format!("CREATE DATABASE {name}");
        let admin_for_thread = admin.clone();
        // The blocking client cannot run inside a test's tokio runtime.
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut client = postgres::Client::connect(&admin_for_thread, postgres::NoTls)?;
            client.batch_execute(&create)?;
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("creating a test database panicked"))??;
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        Ok(Some(format!("{base}/{name}")))
    }
}

/// Runs pending SQLite migrations in one transaction; returns how many
/// were applied. Foreign keys are off meanwhile: SQLite's procedure for
/// making a table again (V16) drops a table that others refer to, which
/// with them on deletes its rows first and fails. A migration that makes a
/// table again must end as V16 does, with a check of every foreign key
/// inside its transaction, so that a broken one rolls the upgrade back.
fn migrate_sqlite(conn: &mut Connection) -> anyhow::Result<usize> {
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let report = embedded_sqlite::migrations::runner()
        .set_grouped(true)
        .run(conn);
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let report = report.map_err(|err| {
        let err = anyhow::Error::new(err);
        if format!("{err:#}").contains("broken = 0") {
            // V16's check: SQLite names only the CHECK, not the row.
            err.context(
                "cannot migrate the database: a row points at nothing \
                 (sqlite3 DB 'PRAGMA foreign_key_check' names it); nothing was changed",
            )
        } else {
            err.context("cannot migrate the database")
        }
    })?;
    Ok(report.applied_migrations().len())
}

/// How long a connection waits for a lock another holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn configure(conn: &Connection) -> anyhow::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
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
        if crate::store::test_postgres::admin_url().is_some() {
            eprintln!("SQLite only: file modes of the SQLite file");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fresh.db");
        let store = Store::open(&path).unwrap();
        store.installation_secret().unwrap();
        for file in [path.clone(), path.with_extension("db-wal")] {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }

    #[test]
    fn the_upgrade_to_v15_keeps_counting_the_last_hours_automatic_mail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v14.db");
        let mut conn = Connection::open(&path).unwrap();
        embedded_sqlite::migrations::runner()
            .set_target(refinery::Target::Version(14))
            .run(&mut conn)
            .unwrap();
        let at = |minutes: i64| {
            (chrono::Utc::now() - chrono::Duration::minutes(minutes))
                .format("%F %T%.f%:z")
                .to_string()
        };
        let outbox = [
            ("ann@customer.test", 1, at(30)),
            ("ann@customer.test", 1, at(110)),
            ("ann@customer.test", 1, at(130)),
            ("ann@customer.test", 0, at(10)),
            ("bob@customer.test,cy@customer.test", 1, at(10)),
            ("bob@customer.test", 1, at(5)),
        ];
        for (n, (to, automatic, created)) in outbox.iter().enumerate() {
            conn.execute(
                "INSERT INTO outbox (message_id, kind, envelope_from, recipients, raw, automatic,
                   status, next_attempt_at, created_at)
                 VALUES (?1, 'confirmation', 'tickets@support.test', ?2, x'00', ?3, 'sent', ?4, ?4)",
                rusqlite::params![format!("m{n}@support.test"), to, automatic, created],
            )
            .unwrap();
        }
        drop(conn);
        assert_eq!(Store::migrate(&path).unwrap(), 4, "V15 to V18");
        let conn = Connection::open(&path).unwrap();
        let mut stmt = conn
            .prepare("SELECT recipient, sent_at FROM recent_automatic_mails ORDER BY sent_at")
            .unwrap();
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // Automatic mails of the last two hours, each to one address, as
        // the outbox dated them.
        let expected: Vec<(String, String)> = [1, 0, 5]
            .into_iter()
            .map(|n| (outbox[n].0.to_string(), outbox[n].2.clone()))
            .collect();
        assert_eq!(rows, expected);
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'outbox_recipients'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "the old index is gone");
    }

    #[test]
    fn the_upgrade_to_v16_keeps_every_message_and_finds_each_by_its_id() {
        if crate::store::test_postgres::admin_url().is_some() {
            eprintln!("SQLite only: the table made again");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v15.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        embedded_sqlite::migrations::runner()
            .set_target(refinery::Target::Version(15))
            .run(&mut conn)
            .unwrap();
        conn.execute_batch(
            "INSERT INTO tickets (number, subject, status, requester, created_at, last_activity_at)
               VALUES (7, 'Printer', 'open', 'ann@customer.test', 't', 't');
             INSERT INTO raw_mails (id, dedup_key, sha256, size, bytes, source, received_at)
               VALUES (3, 'ann-1@customer.test', 'h', 1, x'00', 'imap', 't');
             INSERT INTO messages (id, ticket_number, raw_mail_id, message_id, direction, kind,
                 from_address, subject, date, text, thread_reason, created_at)
               VALUES (10, 7, 3, 'ann-1@customer.test', 'in', 'customer', 'ann@customer.test',
                 'Printer', 'd', 'It jams.', 'a new conversation', 't'),
                      (11, 7, NULL, 'pd.0000000001.7.c.1@support.test', 'out', 'confirmation',
                 'tickets@support.test', 'Printer', 'd', 'We have it.', 'ours', 't'),
                      (12, 7, NULL, 'note.x@support.test', 'in', 'note', 'cli',
                 '', 'd', 'Called her.', 'a note', 't');
             INSERT INTO attachments (id, message_id, filename, media_type, sha256, size)
               VALUES (5, 10, 'jam.png', 'image/png', 'h', 1);",
        )
        .unwrap();
        drop(conn);

        let store = Store::open_file(&path).unwrap();
        for (id, ticket, direction) in [
            ("ann-1@customer.test", 7, "in"),
            ("<pd.0000000001.7.c.1@support.test>", 7, "out"),
            ("note.x@support.test", 7, "in"),
        ] {
            let found = store.explain(id).unwrap().unwrap();
            assert_eq!(
                (found.ticket.0, found.direction.as_str()),
                (ticket, direction)
            );
        }
        assert!(store.explain("nobody@customer.test").unwrap().is_none());
        drop(store);
        // A received mail that carries one of our IDs is stored since V16;
        // the ID still names ours.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO raw_mails (id, dedup_key, sha256, size, bytes, source, received_at)
               VALUES (4, 'pd.0000000001.7.c.1@support.test', 'h2', 1, x'00', 'imap', 't');
             INSERT INTO messages (id, ticket_number, raw_mail_id, message_id, direction, kind,
                 from_address, subject, date, text, thread_reason, created_at)
               VALUES (13, 7, 4, 'pd.0000000001.7.c.1@support.test', 'in', 'customer',
                 'eve@customer.test', 'Printer', 'd', 'Echo.', 'a known message', 't');",
        )
        .unwrap();
        drop(conn);
        let store = Store::open_file(&path).unwrap();
        let found = store
            .explain("pd.0000000001.7.c.1@support.test")
            .unwrap()
            .unwrap();
        assert_eq!(found.direction, "out");
        drop(store);

        let conn = Connection::open(&path).unwrap();
        let ids: Vec<i64> = conn
            .prepare("SELECT m.id FROM messages m JOIN attachments a ON a.message_id = m.id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            ids,
            vec![10],
            "ids are kept, and the attachment with its message"
        );
        let unique_on_message_id: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_index_list('messages') l
                  JOIN pragma_index_info(l.name) i
                 WHERE l.\"unique\" AND l.partial = 0 AND i.name = 'message_id'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            unique_on_message_id, 0,
            "a received mail's ID is indexed once"
        );
        // The search index's trigger came back with the table.
        let backlog = |conn: &Connection| -> i64 {
            conn.query_row("SELECT count(*) FROM search_backlog", [], |r| r.get(0))
                .unwrap()
        };
        let before = backlog(&conn);
        conn.execute(
            "INSERT INTO messages (ticket_number, message_id, direction, kind, from_address,
               subject, date, text, thread_reason, created_at)
             VALUES (7, 'note.y@support.test', 'in', 'note', 'cli', '', 'd', 'Again.', 'a note', 't')",
            [],
        )
        .unwrap();
        assert_eq!(backlog(&conn), before + 1);
    }

    #[test]
    fn an_upgrade_that_would_leave_a_row_pointing_at_nothing_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v15.db");
        let mut conn = Connection::open(&path).unwrap();
        embedded_sqlite::migrations::runner()
            .set_target(refinery::Target::Version(15))
            .run(&mut conn)
            .unwrap();
        // Written with foreign keys off: an attachment of no message.
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        conn.execute(
            "INSERT INTO attachments (id, message_id, filename, media_type, sha256, size)
               VALUES (5, 99, 'lost.png', 'image/png', 'h', 1)",
            [],
        )
        .unwrap();
        drop(conn);
        let err = Store::migrate(&path).unwrap_err();
        assert!(format!("{err:#}").contains("points at nothing"), "{err:#}");
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row(
                "SELECT max(version) FROM refinery_schema_history",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, 15, "nothing of V16 is kept");
        let unique_message_ids: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_autoindex_messages_1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unique_message_ids, 1, "the old table is there");
    }

    #[test]
    fn the_search_trigger_builds_no_temporary_table_per_message() {
        if crate::store::test_postgres::admin_url().is_some() {
            eprintln!("SQLite only: a SQLite query plan");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("v17.db")).unwrap();
        let insert = |kind: &str| {
            format!(
                "INSERT INTO messages (ticket_number, message_id, direction, kind, from_address,
                   subject, date, text, thread_reason, created_at)
                 VALUES (7, 'm-{kind}@support.test', 'in', '{kind}', 'ann@customer.test',
                   'Printer', 'd', 'It jams.', 'r', 't')"
            )
        };
        // Every opcode of the insert, its trigger's program included.
        let opcodes = |conn: &Connection| -> Vec<String> {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN {}", insert("customer")))
                .unwrap();
            stmt.query_map([], |r| r.get::<_, String>(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        embedded_sqlite::migrations::runner()
            .set_target(refinery::Target::Version(17))
            .run(&mut conn)
            .unwrap();
        assert!(
            opcodes(&conn).iter().any(|op| op == "OpenEphemeral"),
            "V17's `IN (...)` builds one (else this test sees nothing)"
        );
        embedded_sqlite::migrations::runner()
            .run(&mut conn)
            .unwrap();
        assert!(!opcodes(&conn).iter().any(|op| op == "OpenEphemeral"));
        // Still only the words that are searched go to the backlog.
        conn.execute_batch(
            "INSERT INTO tickets (number, subject, status, requester, created_at, last_activity_at)
               VALUES (7, 'Printer', 'open', 'ann@customer.test', 't', 't');",
        )
        .unwrap();
        for kind in [
            "customer",
            "agent",
            "note",
            "list",
            "confirmation",
            "notification",
        ] {
            conn.execute(&insert(kind), []).unwrap();
        }
        let mut stmt = conn
            .prepare(
                "SELECT m.kind FROM search_backlog b JOIN messages m ON m.id = b.message_id
                 ORDER BY m.id",
            )
            .unwrap();
        let kinds: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kinds, ["customer", "agent", "note", "list"]);
    }

    #[test]
    fn an_insert_returns_its_id_or_none_when_it_inserted_nothing() {
        use crate::sql_params as params;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let conn = store.write().unwrap();
        let tx = conn.begin().unwrap();
        let insert = "INSERT INTO raw_mails (dedup_key, sha256, size, bytes, source, received_at)
                      VALUES (?1, 'h', 1, ?2, 'imap', 't')
                      ON CONFLICT (dedup_key) DO NOTHING RETURNING id";
        let bytes = b"x".to_vec();
        let first = tx
            .insert_returning_id(insert, params!["a@x", bytes])
            .unwrap();
        let second = tx
            .insert_returning_id(insert, params!["b@x", bytes])
            .unwrap();
        let again = tx
            .insert_returning_id(insert, params!["a@x", bytes])
            .unwrap();
        let id_of = |key: &str| -> i64 {
            tx.query_row(
                "SELECT id FROM raw_mails WHERE dedup_key = ?1",
                params![key],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(first, Some(id_of("a@x")));
        assert_eq!(second, Some(id_of("b@x")));
        assert_ne!(first, second);
        assert_eq!(again, None, "the conflict inserted nothing");
        let without = "INSERT INTO raw_mails (dedup_key, sha256, size, bytes, source, received_at)
                       VALUES (?1, 'h', 1, ?2, 'imap', 't')";
        assert!(
            tx.insert_returning_id(without, params!["c@x", bytes])
                .is_err()
        );
    }
}
