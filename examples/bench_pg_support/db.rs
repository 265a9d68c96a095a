//! The benchmark's view of a daemon's database, SQLite or PostgreSQL: a
//! fresh PostgreSQL database made from the cluster's admin URL, the
//! `[database]` section that points a daemon at it, and the few read-only
//! queries the benchmark polls (UID checkpoints, row counts, lease
//! holders, size). It never writes a daemon's rows, except
//! [`Reader::mark_outbox_sent`] and [`Reader::vacuum_analyze`], which the
//! page benchmark uses on its own copy of a filled desk.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags};

/// Where a daemon keeps its desk.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(PathBuf),
    /// A `postgres://` URL (with the password: it stays in the bench's
    /// temp dir and its children's config files).
    Postgres(String),
}

impl Db {
    pub fn label(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "SQLite",
            Db::Postgres(_) => "PostgreSQL",
        }
    }

    /// The `[database]` section of a daemon's config; `journal` is the
    /// daemon's own `database.path` (its sent journal and lock) when the
    /// desk is in PostgreSQL.
    pub fn toml(&self, journal: &Path) -> String {
        match self {
            Db::Sqlite(path) => format!("[database]\npath = \"{}\"\n", path.display()),
            Db::Postgres(url) => format!(
                "[database]\npath = \"{}\"\nurl = \"{url}\"\n",
                journal.display()
            ),
        }
    }

    pub fn reader(&self) -> anyhow::Result<Reader> {
        Ok(match self {
            Db::Sqlite(path) => Reader::Sqlite(
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            ),
            Db::Postgres(url) => Reader::Postgres(Box::new(
                postgres::Client::connect(url, postgres::NoTls)
                    .context("cannot connect to the benchmark's PostgreSQL database")?,
            )),
        })
    }
}

/// Makes a fresh, empty database `name` in the cluster of `admin_url`
/// (`postgres://ROLE:PW@HOST:PORT/postgres`, a role that may CREATE
/// DATABASE) and returns its URL.
pub fn fresh_postgres(admin_url: &str, name: &str) -> anyhow::Result<String> {
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("a database name of lowercase letters, digits and _ only, not {name:?}");
    }
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("POSTDESK_TEST_POSTGRES is not a postgres://…/DB URL")?;
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls)
        .context("cannot connect to the cluster with POSTDESK_TEST_POSTGRES")?;
    // A plain DROP ends an autovacuum worker on the database by itself;
    // FORCE ends the sessions a run left, but refuses when the worker
    // (the superuser's) is there: whichever works, a few times over.
    let mut tries = 0;
    loop {
        let plain = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"));
        let dropped = plain.or_else(|_| {
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        });
        match dropped {
            Ok(()) => break,
            Err(err) if tries >= 5 => return Err(err.into()),
            Err(_) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    Ok(format!("{base}/{name}"))
}

/// One open connection to a daemon's database, for polling.
pub enum Reader {
    Sqlite(Connection),
    Postgres(Box<postgres::Client>),
}

/// What the database holds after an ingest run.
#[derive(Debug, Default)]
pub struct Counts {
    pub raw: i64,
    pub tickets: i64,
    pub inbound: i64,
    pub confirmations: i64,
    pub outbox: i64,
    pub quarantined: i64,
}

impl Reader {
    /// Rows of (text, integer), e.g. a checkpoint's mailbox and last UID.
    fn pairs(&mut self, sql: &str) -> anyhow::Result<Vec<(String, i64)>> {
        match self {
            Reader::Sqlite(c) => {
                let mut statement = c.prepare_cached(sql)?;
                let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            Reader::Postgres(c) => Ok(c
                .query(sql, &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()),
        }
    }

    fn one(&mut self, sql: &str) -> anyhow::Result<i64> {
        match self {
            Reader::Sqlite(c) => Ok(c.query_row(sql, [], |r| r.get(0))?),
            Reader::Postgres(c) => Ok(c.query_one(sql, &[])?.get(0)),
        }
    }

    /// Each mailbox's checkpoint key and last stored UID (none before the
    /// schema exists).
    pub fn checkpoints(&mut self) -> Vec<(String, i64)> {
        self.pairs("SELECT mailbox, last_uid FROM imap_checkpoints")
            .unwrap_or_default()
    }

    /// Which daemon (`host:pid:id`) holds which mailbox's lease
    /// (PostgreSQL; SQLite's one daemon holds none).
    pub fn lease_holders(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        match self {
            Reader::Sqlite(_) => Ok(Vec::new()),
            Reader::Postgres(c) => Ok(c
                .query(
                    "SELECT mailbox, holder FROM mailbox_leases ORDER BY mailbox",
                    &[],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()),
        }
    }

    pub fn counts(&mut self) -> anyhow::Result<Counts> {
        Ok(Counts {
            raw: self.one("SELECT count(*) FROM raw_mails")?,
            tickets: self.one("SELECT count(*) FROM tickets")?,
            inbound: self.one("SELECT count(*) FROM messages WHERE direction = 'in'")?,
            confirmations: self.one("SELECT count(*) FROM outbox WHERE kind = 'confirmation'")?,
            outbox: self.one("SELECT count(*) FROM outbox")?,
            quarantined: self.one("SELECT count(*) FROM quarantine")?,
        })
    }

    /// Bytes the desk takes: the PostgreSQL database's size, or the
    /// SQLite file's once its WAL is folded in (call it with the daemons
    /// stopped).
    pub fn size_bytes(&mut self, db: &Db) -> anyhow::Result<u64> {
        match (self, db) {
            (Reader::Postgres(c), _) => {
                let size: i64 = c
                    .query_one("SELECT pg_database_size(current_database())", &[])?
                    .get(0);
                Ok(u64::try_from(size)?)
            }
            (Reader::Sqlite(c), Db::Sqlite(path)) => {
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(std::fs::metadata(path)?.len())
            }
            (Reader::Sqlite(_), Db::Postgres(_)) => bail!("a SQLite reader for a PostgreSQL desk"),
        }
    }

    /// Marks every outgoing mail sent, as if the desk's mail had long gone
    /// out: a copied desk's 100,000s of queued confirmations would
    /// otherwise be sent (or expired) while its pages are measured.
    pub fn mark_outbox_sent(&mut self) -> anyhow::Result<u64> {
        let sql = "UPDATE outbox SET status = 'sent', sent_at = created_at WHERE status <> 'sent'";
        Ok(match self {
            Reader::Sqlite(c) => c.execute(sql, [])? as u64,
            Reader::Postgres(c) => c.execute(sql, &[])?,
        })
    }
}

impl Reader {
    /// `VACUUM (ANALYZE)` on PostgreSQL (a no-op on SQLite): what an
    /// operator runs after a bulk load, so that neither the planner's
    /// missing statistics nor autovacuum's first pass over the copied desk
    /// is what gets measured.
    pub fn vacuum_analyze(&mut self) -> anyhow::Result<()> {
        if let Reader::Postgres(c) = self {
            c.batch_execute("VACUUM (ANALYZE)")?;
        }
        Ok(())
    }
}

impl Counts {
    /// Every mail a ticket or a follow-up, every new ticket confirmed.
    pub fn check(&self, mails: usize, replies: usize) -> anyhow::Result<()> {
        println!(
            "database: {} raw mails, {} tickets, {} inbound messages, {} confirmations, \
             {} outbox rows, {} quarantined",
            self.raw, self.tickets, self.inbound, self.confirmations, self.outbox, self.quarantined
        );
        let (mails, new) = (mails as i64, (mails - replies) as i64);
        if self.raw != mails
            || self.inbound != mails
            || self.tickets != new
            || self.confirmations != new
            || self.quarantined != 0
        {
            bail!(
                "expected {mails} inbound messages on {new} tickets, each confirmed, none quarantined"
            );
        }
        Ok(())
    }
}
