//! A PostgreSQL cluster of one test's own (`scripts/pgcluster` in a short
//! directory under /tmp, on a free port), for the test that stops it for a
//! while: the suite's cluster (`POSTDESK_TEST_POSTGRES`), which other tests
//! use at the same time, is never touched. Queries here are plain text
//! (`simple_query`), one connection each, made off the tests' runtime; no
//! connection is held between calls. Stopped (and removed) on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn pgcluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pgcluster")
}

/// Runs `scripts/pgcluster ARGS` (blocking): its stdout, or why it failed.
fn pgcluster(args: &[&str]) -> Result<String, String> {
    let out = Command::new(pgcluster_script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/pgcluster: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "scripts/pgcluster {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

async fn pgcluster_async(args: Vec<String>) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pgcluster(&args)
    })
    .await
    .expect("scripts/pgcluster did not panic")
}

/// A private cluster: its directory and the test role's URL of `postgres`.
pub struct PrivateCluster {
    pub dir: PathBuf,
    admin_url: String,
}

impl PrivateCluster {
    pub async fn start() -> PrivateCluster {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .expect("starting the private cluster did not panic")
    }

    fn start_blocking() -> PrivateCluster {
        let mut last_error = String::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("pdpg.")
                .tempdir_in("/tmp")
                .expect("a temp dir under /tmp")
                .keep();
            let path = dir.to_str().expect("a UTF-8 path").to_string();
            let started = pgcluster(&["free-port"])
                .and_then(|port| pgcluster(&["start", &path, port.trim()]))
                .and_then(|_| pgcluster(&["env", &path]));
            match started {
                Ok(env) => {
                    let admin_url = env
                        .trim()
                        .strip_prefix("export POSTDESK_TEST_POSTGRES=")
                        .expect("pgcluster env prints the URL")
                        .to_string();
                    return PrivateCluster { dir, admin_url };
                }
                // Another run may have taken the port in between.
                Err(err) => {
                    let _ = pgcluster(&["stop", &path]);
                    let _ = std::fs::remove_dir_all(&dir);
                    last_error = err;
                }
            }
        }
        panic!("no private PostgreSQL cluster after 3 attempts: {last_error}");
    }

    fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    /// A fresh database `name` owned by the test role; its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let sql = format!("CREATE DATABASE {name} OWNER postdesk");
        let args = ["psql", &self.dir_arg(), "-v", "ON_ERROR_STOP=1", "-c", &sql];
        pgcluster_async(args.iter().map(|a| a.to_string()).collect())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let base = self.admin_url.strip_suffix("/postgres");
        format!("{}/{name}", base.expect("the admin URL names postgres"))
    }

    /// Fast shutdown: every connection of the daemons breaks.
    pub async fn stop(&self) {
        pgcluster_async(vec!["stop".into(), self.dir_arg()])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the stopped cluster again, on the same port.
    pub async fn start_again(&self) {
        pgcluster_async(vec!["start".into(), self.dir_arg()])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let dir = self.dir_arg();
        match pgcluster(&["stop", &dir]) {
            Ok(_) if !std::thread::panicking() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Ok(_) => eprintln!("the private cluster's log is kept in {dir}/postgres.log"),
            Err(err) => eprintln!("{err} (kept in {dir})"),
        }
    }
}

/// Every row of `sql` at `url`, each column as text ("" for NULL); the
/// error when the server cannot be reached (it may be stopped on purpose).
pub fn rows(url: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    // The blocking client runs a runtime of its own: not on the tests'.
    std::thread::scope(|s| s.spawn(move || rows_blocking(&url, &sql)).join())
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn rows_blocking(url: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let mut config: postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
    config.connect_timeout(Duration::from_secs(5));
    let mut client = config.connect(postgres::NoTls).map_err(|e| e.to_string())?;
    let messages = client
        .simple_query(sql)
        .map_err(|e| format!("{sql}: {e}"))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The number `sql` counts; 0 while it cannot be read (tables not made
/// yet, the server stopped).
pub fn count_or_zero(url: &str, sql: &str) -> i64 {
    let rows = rows(url, sql).unwrap_or_default();
    let first = rows.first().and_then(|r| r.first());
    first.and_then(|n| n.parse().ok()).unwrap_or(0)
}
