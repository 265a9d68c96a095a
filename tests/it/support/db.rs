//! The tests' database seam: SQLite (a file in the test's directory) by
//! default, or a fresh PostgreSQL database per test when
//! `POSTDESK_TEST_POSTGRES` holds an admin URL of a private cluster. It
//! hands out the settings (env keys, TOML, `DatabaseSettings`) that point a
//! daemon or the CLI at that database, and the few queries tests assert
//! with. It must not hold a connection between calls (the daemon under
//! test owns the database), and its SQL must run unchanged on both
//! backends: `$1` placeholders numbered in order of first use, no GLOB,
//! rowid or pragma, CAST(... AS BIGINT) around SUM, CAST(... AS TEXT)
//! around JSON or time columns.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use postdesk::settings::{DatabaseSettings, Settings};

mod lite;
mod pg;
#[cfg(test)]
mod tests;

/// The admin URL of the PostgreSQL cluster under test, if any.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("POSTDESK_TEST_POSTGRES")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// True (after printing why) when the suite runs against PostgreSQL and
/// the calling test shows something only SQLite's file has; the test then
/// returns early.
pub fn sqlite_only(why: &str) -> bool {
    let skip = postgres_admin_url().is_some();
    if skip {
        eprintln!("skipped on PostgreSQL (SQLite only: {why})");
    }
    skip
}

/// One value of a query's parameters or results.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value {
    /// The value as a whole number (a boolean as 0/1); panics otherwise.
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(n) => *n,
            other => panic!("expected a whole number, got {other:?}"),
        }
    }

    /// The value as text: numbers in decimal, bytes as UTF-8 (lossy).
    pub fn text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Int(n) => n.to_string(),
            Value::Real(x) => x.to_string(),
            Value::Text(s) => s.clone(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }

    /// The value as bytes (text as its UTF-8).
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Bytes(b) => b.clone(),
            other => other.text().into_bytes(),
        }
    }
}

/// What a test passes as a query parameter: `&[&id, &"text"]`.
pub trait Param {
    fn value(&self) -> Value;
}

impl Param for i64 {
    fn value(&self) -> Value {
        Value::Int(*self)
    }
}
impl Param for i32 {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Param for u32 {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}
impl Param for &str {
    fn value(&self) -> Value {
        Value::Text((*self).to_string())
    }
}
impl Param for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl Param for Vec<u8> {
    fn value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}

/// One test's database: the SQLite file `path`, or (PostgreSQL) the
/// database at `url`, with `path` still naming where files that live
/// beside the database (the sent journal, the in-flight marker) go.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub path: PathBuf,
    pub url: Option<String>,
}

/// PostgreSQL databases made for the tests, by the path they stand for;
/// each is dropped with the `TestDir` it lives in.
fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<TestDb>>> {
    static DATABASES: OnceLock<Mutex<HashMap<PathBuf, Arc<TestDb>>>> = OnceLock::new();
    DATABASES.get_or_init(Default::default)
}

/// The database standing for `path` (a file name in a test's directory,
/// e.g. `dir.join("postdesk.db")`): that SQLite file, or a fresh
/// PostgreSQL database made on first use and the same one afterwards.
pub fn test_database(path: &Path) -> TestDb {
    let Some(admin) = postgres_admin_url() else {
        return TestDb {
            path: path.to_path_buf(),
            url: None,
        };
    };
    let mut made = registry().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(db) = made.get(path) {
        return TestDb::clone(db);
    }
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("the OS random source works");
    let name = format!("pd_{}", hex::encode(random));
    let create = format!("CREATE DATABASE {name}");
    pg::off_runtime(|| pg::connect(&admin)?.batch_execute(&create))
        .unwrap_or_else(|e| panic!("{create} on POSTDESK_TEST_POSTGRES: {e}"));
    let db = TestDb {
        path: path.to_path_buf(),
        url: Some(with_database(&admin, &name)),
    };
    made.insert(path.to_path_buf(), Arc::new(db.clone()));
    db
}

/// Drops (bounded, errors ignored) the PostgreSQL databases of paths
/// under `dir`: called when a test's directory goes.
pub fn drop_databases_under(dir: &Path) {
    let Some(admin) = postgres_admin_url() else {
        return;
    };
    let gone: Vec<Arc<TestDb>> = {
        let mut made = registry().lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<PathBuf> = made
            .keys()
            .filter(|k| k.starts_with(dir))
            .cloned()
            .collect();
        keys.iter().filter_map(|k| made.remove(k)).collect()
    };
    for db in gone {
        let Some(name) = db.url.as_deref().and_then(database_name) else {
            continue;
        };
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let admin = admin.clone();
        // Never block a test on it: a thread of its own, waited for 5 s.
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let result = pg::connect(&admin).and_then(|mut c| c.batch_execute(&drop));
            let _ = done.send(result);
        });
        if let Ok(Err(e)) = wait.recv_timeout(Duration::from_secs(5)) {
            eprintln!("could not drop the test database {name}: {e}");
        }
    }
}

/// `admin` with its database name replaced by `name` (query kept).
fn with_database(admin: &str, name: &str) -> String {
    let scheme_end = admin.find("://").map_or(0, |i| i + 3);
    let (base, query) = match admin.find('?') {
        Some(q) => admin.split_at(q),
        None => (admin, ""),
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..authority_end])
}

fn database_name(url: &str) -> Option<&str> {
    let path = url.split('?').next()?;
    path.rsplit('/').next().filter(|n| n.starts_with("pd_"))
}

impl TestDb {
    pub fn is_postgres(&self) -> bool {
        self.url.is_some()
    }

    /// The settings keys (without `POSTDESK__`) that select this database.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("DATABASE__PATH", self.path.display().to_string())];
        if let Some(url) = &self.url {
            env.push(("DATABASE__URL", url.clone()));
        }
        env
    }

    /// The same as environment variables of a `postdesk` process.
    pub fn process_env(&self) -> Vec<(String, String)> {
        let env = self.env().into_iter();
        env.map(|(k, v)| (format!("POSTDESK__{k}"), v)).collect()
    }

    /// The lines of a config file's `[database]` section.
    pub fn toml(&self) -> String {
        let mut text = format!("path = {:?}\n", self.path.display().to_string());
        if let Some(url) = &self.url {
            text.push_str(&format!("url = {url:?}\n"));
        }
        text
    }

    /// The `[database]` settings for `Store::connect`.
    pub fn settings(&self) -> DatabaseSettings {
        let mut env = self.process_env();
        env.push((
            "POSTDESK__SUPPORT__ADDRESS".into(),
            "tickets@example.com".into(),
        ));
        Settings::load_with_env(None, env)
            .expect("the database settings are valid")
            .database
    }

    /// Every row of `sql`, each a list of its columns' values.
    pub fn rows(&self, sql: &str, params: &[&dyn Param]) -> Vec<Vec<Value>> {
        self.try_rows(sql, params)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of `sql`, or the error (a table not made yet, say).
    pub fn try_rows(&self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Vec<Value>>, String> {
        let params: Vec<Value> = params.iter().map(|p| p.value()).collect();
        match &self.url {
            Some(url) => pg::off_runtime(|| pg::rows(url, sql, &params)),
            None => lite::rows(&self.path, sql, &params),
        }
    }

    /// Every row of `sql`, each column as text.
    pub fn rows_text(&self, sql: &str, params: &[&dyn Param]) -> Vec<Vec<String>> {
        let rows = self.rows(sql, params).into_iter();
        rows.map(|r| r.iter().map(Value::text).collect()).collect()
    }

    /// The first column of the one row `sql` gives.
    pub fn scalar(&self, sql: &str, params: &[&dyn Param]) -> Value {
        let rows = self.rows(sql, params);
        let first = rows.into_iter().next();
        let first = first.unwrap_or_else(|| panic!("{sql}: no row"));
        first.into_iter().next().unwrap_or(Value::Null)
    }

    pub fn scalar_i64(&self, sql: &str, params: &[&dyn Param]) -> i64 {
        self.scalar(sql, params).int()
    }

    pub fn scalar_text(&self, sql: &str, params: &[&dyn Param]) -> String {
        self.scalar(sql, params).text()
    }

    /// A count while the daemon may still be making the database: 0 while
    /// it or its tables do not exist yet (or cannot be read).
    pub fn count_or_zero(&self, sql: &str, params: &[&dyn Param]) -> i64 {
        if self.url.is_none() && !self.path.exists() {
            return 0;
        }
        let rows = self.try_rows(sql, params).unwrap_or_default();
        let first = rows.into_iter().next().and_then(|r| r.into_iter().next());
        match first {
            Some(Value::Int(n)) => n,
            _ => 0,
        }
    }

    /// Runs `sql` (one statement); the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Param]) -> u64 {
        let params: Vec<Value> = params.iter().map(|p| p.value()).collect();
        let done = match &self.url {
            Some(url) => pg::off_runtime(|| pg::execute(url, sql, &params)),
            None => lite::execute(&self.path, sql, &params),
        };
        done.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

/// A temporary directory for one test's database; the PostgreSQL
/// databases standing for files in it go with it.
pub struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = tempfile::TempDir;
    fn deref(&self) -> &tempfile::TempDir {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        drop_databases_under(self.0.path());
    }
}

pub fn temp_dir() -> TestDir {
    let dir = tempfile::Builder::new()
        .prefix("postdesk-it")
        .tempdir()
        .expect("a temp dir");
    TestDir(dir)
}

/// The store of the database standing for `db`, opened as the daemon
/// opens it.
pub fn open_store(db: &std::path::Path) -> postdesk::store::Store {
    connect_store(&test_database(db).settings())
}

/// `Store::connect`, for tests that open the store the daemon uses.
pub fn connect_store(database: &postdesk::settings::DatabaseSettings) -> postdesk::store::Store {
    postdesk::store::Store::connect(database).expect("the database opens")
}
