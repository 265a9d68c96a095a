//! The one SQL surface the store's modules speak, over SQLite (rusqlite)
//! or PostgreSQL (the blocking `postgres` client). A [`Tx`] runs a SQL
//! text with `?N` placeholders on either backend (rewritten to `$N` for
//! PostgreSQL, statements prepared once per connection), reads rows
//! through [`Row::get`], and nests savepoints. Transactions are plain SQL
//! (`BEGIN`, `SAVEPOINT`), so the orchestration above (a savepoint per
//! mail, a rolled-back mail quarantined) is the same code for both. This
//! module decides nothing about tickets; SQL that differs by backend is
//! chosen by its caller from [`Tx::backend`].

mod pg;
pub mod tls;
mod value;
mod worker;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub use pg::is_transient;
pub use value::{Column, Param, Value};

/// Which database a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An open connection, owned by a pool or a writer slot.
pub enum Conn {
    Lite(rusqlite::Connection),
    Pg(PgConn),
}

/// A PostgreSQL connection (on its own thread) and the statements
/// prepared on it.
pub struct PgConn {
    worker: worker::PgWorker,
    statements: RefCell<HashMap<String, postgres::Statement>>,
    closed: Cell<bool>,
}

impl PgConn {
    pub fn connect(config: postgres::Config, tls: tls::Tls) -> anyhow::Result<PgConn> {
        Ok(PgConn {
            worker: worker::PgWorker::connect(config, tls)?,
            statements: RefCell::new(HashMap::new()),
            closed: Cell::new(false),
        })
    }

    /// Runs `job` with the client on the connection's thread. A client
    /// found closed (its server restarted) marks the connection unusable.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> R + Send + 'static,
    ) -> anyhow::Result<R> {
        let (result, closed) = self.worker.run(move |client| {
            let result = job(client);
            (result, client.is_closed())
        })?;
        if closed {
            self.closed.set(true);
        }
        Ok(result)
    }

    fn statement(&self, sql: &str) -> anyhow::Result<postgres::Statement> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let text = pg::translate(sql);
        let statement = self
            .run(move |client| client.prepare(&text))?
            .map_err(|err| pg::explain(err, sql))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn execute(&self, sql: &str, values: Vec<Value<'static>>) -> anyhow::Result<u64> {
        let statement = self.statement(sql)?;
        self.run(move |client| client.execute(&statement, &pg::refs(&values)))?
            .map_err(|err| pg::explain(err, sql))
    }

    fn query(&self, sql: &str, values: Vec<Value<'static>>) -> anyhow::Result<Vec<postgres::Row>> {
        let statement = self.statement(sql)?;
        self.run(move |client| client.query(&statement, &pg::refs(&values)))?
            .map_err(|err| pg::explain(err, sql))
    }

    fn batch(&self, sql: &str) -> anyhow::Result<()> {
        let text = sql.to_string();
        self.run(move |client| client.batch_execute(&text))?
            .map_err(|err| pg::explain(err, sql))
    }
}

impl Conn {
    pub fn backend(&self) -> Backend {
        match self {
            Conn::Lite(_) => Backend::Sqlite,
            Conn::Pg(_) => Backend::Postgres,
        }
    }

    /// Whether the connection can still be used (a PostgreSQL one is
    /// closed after its server restarted).
    pub fn is_usable(&self) -> bool {
        match self {
            Conn::Lite(_) => true,
            Conn::Pg(pg) => !pg.closed.get(),
        }
    }

    /// Begins a transaction; it rolls back unless committed. SQLite's is
    /// IMMEDIATE: the write lock is taken at once, never upgraded midway.
    /// `before_commit` is what the transaction runs just before its
    /// `COMMIT` (after every savepoint is released): work that is cheaper
    /// once per transaction than once per statement.
    pub fn begin_with(&self, before_commit: Option<BeforeCommit>) -> anyhow::Result<Tx<'_>> {
        let mut tx = self.plain();
        tx.execute_batch(match self {
            Conn::Lite(_) => "BEGIN IMMEDIATE",
            Conn::Pg(_) => "BEGIN",
        })?;
        tx.open.set(true);
        tx.before_commit = before_commit;
        Ok(tx)
    }

    /// One statement in its own transaction.
    pub fn execute(&self, sql: &str, params: impl Params) -> anyhow::Result<usize> {
        self.plain().execute(sql, params)
    }

    /// One query in its own transaction.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.plain().query_row(sql, params, f)
    }

    /// Statements without a transaction around them (each its own).
    pub fn plain(&self) -> Tx<'_> {
        Tx {
            conn: match self {
                Conn::Lite(c) => ConnRef::Lite(c),
                Conn::Pg(c) => ConnRef::Pg(c),
            },
            open: Cell::new(false),
            depth: Cell::new(0),
            before_commit: None,
        }
    }
}

#[derive(Clone, Copy)]
enum ConnRef<'c> {
    Lite(&'c rusqlite::Connection),
    Pg(&'c PgConn),
}

/// A transaction (or autocommit access) on one connection. All methods
/// take `&self`, so the store's functions pass `&Tx` around.
pub struct Tx<'c> {
    conn: ConnRef<'c>,
    open: Cell<bool>,
    depth: Cell<u32>,
    /// Run just before `COMMIT` (see [`Conn::begin_with`]).
    before_commit: Option<BeforeCommit>,
}

/// Work a transaction does just before its `COMMIT` (see
/// [`Conn::begin_with`]); its error fails the commit.
pub type BeforeCommit = fn(&Tx) -> anyhow::Result<()>;

/// The marker error of a `query_row` that found no row.
#[derive(Debug, thiserror::Error)]
#[error("the query returned no rows")]
pub struct NoRows;

/// `.optional()` on a `query_row`, as with rusqlite.
pub trait OptionalExtension<T> {
    fn optional(self) -> anyhow::Result<Option<T>>;
}

impl<T> OptionalExtension<T> for anyhow::Result<T> {
    fn optional(self) -> anyhow::Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(err) if err.is::<NoRows>() => Ok(None),
            Err(err) => Err(err),
        }
    }
}

/// One result row.
pub enum Row<'r> {
    Lite(&'r rusqlite::Row<'r>),
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    pub fn get<I: Idx, T: Column>(&self, idx: I) -> anyhow::Result<T> {
        let idx = idx.index();
        match self {
            Row::Lite(r) => Ok(r.get(idx)?),
            Row::Pg(r) => {
                T::from_pg(r, idx).map_err(|err| err.context(format!("reading column {idx}")))
            }
        }
    }
}

impl<'r> Row<'r> {
    /// A non-NULL text column, borrowed from the row: what
    /// `get::<_, String>` reads, without a copy (for text that is only
    /// looked at, such as a status word or a stored time).
    pub fn text(&self, idx: usize) -> anyhow::Result<&'r str> {
        match *self {
            Row::Lite(r) => Ok(r.get_ref(idx)?.as_str()?),
            Row::Pg(r) => r
                .try_get::<_, Option<&str>>(idx)?
                .ok_or_else(|| anyhow::anyhow!("column {idx} is NULL")),
        }
    }
}

/// The parameters of one statement: `params![a, b]`, `[a]` or `[]`.
pub trait Params {
    fn values(&self) -> Vec<Value<'_>>;
}

impl Params for &[&dyn Param] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|p| p.value()).collect()
    }
}

impl Params for [&dyn Param; 0] {
    fn values(&self) -> Vec<Value<'_>> {
        Vec::new()
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: Param> Params for [T; $n] {
            fn values(&self) -> Vec<Value<'_>> {
                self.iter().map(|p| p.value()).collect()
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6 7 8);

/// A column index (only `usize`: rusqlite's names are not portable).
pub trait Idx {
    fn index(self) -> usize;
}

impl Idx for usize {
    fn index(self) -> usize {
        self
    }
}

/// What a query yields: its mapped rows, each already `Ok`, so the
/// rusqlite idiom `.collect::<Result<_, _>>()?` reads the same.
pub type Rows<T> = std::vec::IntoIter<anyhow::Result<T>>;

/// A statement by its SQL text; each backend caches the prepared form.
pub struct Stmt<'t, 'c> {
    tx: &'t Tx<'c>,
    sql: &'t str,
}

impl Stmt<'_, '_> {
    pub fn execute(&mut self, params: impl Params) -> anyhow::Result<usize> {
        self.tx.execute(self.sql, params)
    }

    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.tx.query_row(self.sql, params, f)
    }

    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        f: impl FnMut(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<Rows<T>> {
        self.tx.query_map(self.sql, params, f)
    }
}

impl<'c> Tx<'c> {
    /// A SQLite connection seen through the portable surface (tests, and
    /// SQLite-only paths such as backup).
    #[cfg(test)]
    pub fn lite(conn: &'c rusqlite::Connection) -> Tx<'c> {
        Tx {
            conn: ConnRef::Lite(conn),
            open: Cell::new(false),
            depth: Cell::new(0),
            before_commit: None,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.conn {
            ConnRef::Lite(_) => Backend::Sqlite,
            ConnRef::Pg(_) => Backend::Postgres,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> anyhow::Result<usize> {
        let values = params.values();
        match self.conn {
            ConnRef::Lite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(values.iter()))?)
            }
            ConnRef::Pg(c) => Ok(c.execute(sql, value::owned(values))? as usize),
        }
    }

    /// Runs a query; maps every row.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<Rows<T>> {
        let values = params.values();
        let mut out = Vec::new();
        match self.conn {
            ConnRef::Lite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                while let Some(row) = rows.next()? {
                    out.push(Ok(f(&Row::Lite(row))?));
                }
            }
            ConnRef::Pg(c) => {
                for row in &c.query(sql, value::owned(values))? {
                    out.push(Ok(f(&Row::Pg(row))?));
                }
            }
        }
        Ok(out.into_iter())
    }

    /// The first row mapped, or the [`NoRows`] error (see `optional`).
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let values = params.values();
        match self.conn {
            ConnRef::Lite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter()))?;
                match rows.next()? {
                    Some(row) => f(&Row::Lite(row)),
                    None => Err(NoRows.into()),
                }
            }
            ConnRef::Pg(c) => match c.query(sql, value::owned(values))?.first() {
                Some(row) => f(&Row::Pg(row)),
                None => Err(NoRows.into()),
            },
        }
    }

    /// Runs `INSERT … RETURNING id` of one row: the new row's `id`, or
    /// `None` when it inserted nothing (`ON CONFLICT … DO NOTHING`). On
    /// SQLite the statement runs without its `RETURNING id`, read from the
    /// connection instead: SQLite gathers returned rows in a temporary
    /// b-tree built and dropped for every statement run (3–5 µs an insert;
    /// the ingest writes two such rows per mail, issue 16). Its changes
    /// count only the row itself, never those of a trigger, and the last
    /// rowid is the statement's once its triggers are done.
    pub fn insert_returning_id(
        &self,
        sql: &str,
        params: impl Params,
    ) -> anyhow::Result<Option<i64>> {
        let Some(insert) = sql.trim_end().strip_suffix("RETURNING id") else {
            anyhow::bail!("not an INSERT ending in RETURNING id: {sql}");
        };
        match self.conn {
            ConnRef::Lite(c) => {
                let inserted = self.execute(insert, params)? == 1;
                Ok(inserted.then(|| c.last_insert_rowid()))
            }
            ConnRef::Pg(_) => self.query_row(sql, params, |r| r.get(0)).optional(),
        }
    }

    /// The statement, for the rusqlite idiom `prepare_cached(sql)?.execute(…)`.
    pub fn prepare_cached<'t>(&'t self, sql: &'t str) -> anyhow::Result<Stmt<'t, 'c>> {
        Ok(Stmt { tx: self, sql })
    }

    /// The same as [`Tx::prepare_cached`]: every statement is cached.
    pub fn prepare<'t>(&'t self, sql: &'t str) -> anyhow::Result<Stmt<'t, 'c>> {
        Ok(Stmt { tx: self, sql })
    }

    /// Statements without parameters, separated by `;`.
    pub fn execute_batch(&self, sql: &str) -> anyhow::Result<()> {
        match self.conn {
            ConnRef::Lite(c) => Ok(c.execute_batch(sql)?),
            ConnRef::Pg(c) => c.batch(sql),
        }
    }

    /// A nested savepoint: rolled back on drop unless committed.
    pub fn savepoint(&self) -> anyhow::Result<Savepoint<'_, 'c>> {
        let depth = self.depth.get() + 1;
        self.execute_batch(&format!("SAVEPOINT sp{depth}"))?;
        self.depth.set(depth);
        Ok(Savepoint {
            tx: self,
            depth,
            done: false,
        })
    }

    /// Rolls the transaction back (as dropping it would), reporting errors.
    pub fn rollback(self) -> anyhow::Result<()> {
        if self.open.get() {
            self.open.set(false);
            self.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    /// Commits the transaction begun by [`Conn::begin_with`].
    pub fn commit(self) -> anyhow::Result<()> {
        if self.open.get() {
            if let Some(work) = self.before_commit {
                work(&self)?;
            }
            self.execute_batch("COMMIT")?;
            self.open.set(false);
        }
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open.get() {
            // Nothing to report to: the caller's error is already on its way.
            let _ = self.execute_batch("ROLLBACK");
        }
    }
}

/// A savepoint inside a [`Tx`]; derefs to it, so it is passed as `&Tx`.
pub struct Savepoint<'t, 'c> {
    tx: &'t Tx<'c>,
    depth: u32,
    done: bool,
}

impl Savepoint<'_, '_> {
    pub fn commit(mut self) -> anyhow::Result<()> {
        self.done = true;
        self.tx.depth.set(self.depth - 1);
        self.tx
            .execute_batch(&format!("RELEASE SAVEPOINT sp{}", self.depth))
    }
}

impl<'c> std::ops::Deref for Savepoint<'_, 'c> {
    type Target = Tx<'c>;
    fn deref(&self) -> &Tx<'c> {
        self.tx
    }
}

impl Drop for Savepoint<'_, '_> {
    fn drop(&mut self) {
        if !self.done {
            self.tx.depth.set(self.depth - 1);
            let n = self.depth;
            let _ = self.tx.execute_batch(&format!(
                "ROLLBACK TO SAVEPOINT sp{n}; RELEASE SAVEPOINT sp{n}"
            ));
        }
    }
}
