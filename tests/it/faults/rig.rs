//! The fault rig: the real `postdesk run` as a child process with its log
//! captured line by line, a TOML config for it, the CLI and `/metrics`,
//! bulk APPEND and read-back over IMAP, and read-only looks into the
//! daemon's database while it runs. Private stacks are in `stack.rs`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Stack, binary, imap_login, test_database};
use futures_util::TryStreamExt;

/// A config file for `postdesk run`: plain IMAP and SMTP on loopback, the
/// page on port 0, no rate limit in the way of a backlog.
pub struct Config {
    pub support: String,
    pub imap_port: u16,
    pub smtp_port: u16,
    pub password: String,
    pub mailbox: String,
    pub after_ingest: String,
    pub agents: Vec<String>,
    pub timeout_seconds: u64,
    pub db: PathBuf,
    /// Extra TOML appended as is (e.g. a `[limits]` override).
    pub extra: String,
}

impl Config {
    pub fn new(stack: &Stack, support: &str, dir: &Path) -> Config {
        Config {
            support: support.to_string(),
            imap_port: stack.imap_port,
            smtp_port: stack.smtp_port,
            password: stack.password.clone(),
            mailbox: "INBOX".to_string(),
            after_ingest: "seen".to_string(),
            agents: Vec::new(),
            timeout_seconds: 10,
            db: dir.join("postdesk.db"),
            extra: String::new(),
        }
    }

    /// Writes `postdesk.toml` next to the database; returns its path.
    pub fn write(&self) -> PathBuf {
        self.write_as("postdesk.toml")
    }

    /// Writes the file `name` next to the database; returns its path.
    pub fn write_as(&self, name: &str) -> PathBuf {
        let agents: Vec<String> = self.agents.iter().map(|a| format!("{a:?}")).collect();
        let text = format!(
            r#"[support]
address = {support:?}
name = "Example Support"
agents = [{agents}]
public_url = "http://127.0.0.1:8025"

[imap]
host = "127.0.0.1"
port = {imap_port}
tls = "none"
username = {support:?}
password = {password:?}
mailbox = {mailbox:?}
after_ingest = {after:?}
poll_seconds = 1
timeout_seconds = {timeout}

[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
timeout_seconds = 10

[database]
{database}
[web]
listen = "127.0.0.1:0"
agent_token = {agent_token:?}

[limits]
auto_replies_per_hour = 100000
{extra}
"#,
            support = self.support,
            agents = agents.join(", "),
            imap_port = self.imap_port,
            password = self.password,
            mailbox = self.mailbox,
            after = self.after_ingest,
            timeout = self.timeout_seconds,
            smtp_port = self.smtp_port,
            database = test_database(&self.db).toml(),
            extra = self.extra,
            agent_token = RIG_AGENT_KEY,
        );
        let path = self.db.with_file_name(name);
        std::fs::write(&path, text).expect("write the config");
        path
    }
}

/// The daemons' log lines with the moment each arrived, across restarts.
#[derive(Clone, Default)]
pub struct Log {
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Log {
    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn text(&self) -> String {
        let lines: Vec<String> = self.lines().into_iter().map(|(_, l)| l).collect();
        lines.join("\n")
    }

    /// Lines containing `needle`, with their arrival.
    pub fn matching(&self, needle: &str) -> Vec<(Instant, String)> {
        self.lines()
            .into_iter()
            .filter(|(_, l)| l.contains(needle))
            .collect()
    }

    fn push(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Instant::now(), line));
    }
}

/// `postdesk run --config FILE` as a child process; SIGKILLed on drop.
pub struct DaemonProcess {
    child: Child,
    log: Log,
    started: Instant,
}

impl DaemonProcess {
    pub fn spawn(config: &Path, log: &Log) -> DaemonProcess {
        let mut child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,refinery_core=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("postdesk run starts");
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        let pid = child.id();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.push(format!("[{pid}] {line}"));
            }
        });
        DaemonProcess {
            child,
            log: log.clone(),
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How the process ended, if it ended on its own meanwhile.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL (what `Child::kill` sends on Unix), then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {}", self.pid());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop within 15 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The status page's address, from the start-up log line.
    pub async fn web_addr(&self) -> SocketAddr {
        let needle = format!("[{}] ", self.pid());
        within("the daemon logs its web address", 30, || async {
            self.log.lines().iter().find_map(|(_, l)| {
                let rest = l.strip_prefix(&needle)?;
                let addr = rest.split("status page on http://").nth(1)?;
                addr.trim().parse().ok()
            })
        })
        .await
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill9();
        }
    }
}

/// Polls `check` every 100 ms until it gives `Some`, for at most `secs`.
pub async fn within<T, F, Fut>(what: &str, secs: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `postdesk ARGS --config FILE` to the end: (exit code, stdout, stderr).
pub fn cli(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("postdesk runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tickets show N --json`, parsed.
pub fn ticket_json(config: &Path, number: i64) -> serde_json::Value {
    let (code, out, err) = cli(config, &["tickets", "show", &number.to_string(), "--json"]);
    assert_eq!(code, Some(0), "tickets show {number}: {err}");
    serde_json::from_str(&out).expect("tickets show --json prints JSON")
}

/// The agent key of the rig's daemons: `/metrics` on the page's listener
/// needs it.
const RIG_AGENT_KEY: &str = "fault-rig-agent-key-0123456789";

/// One number from `/metrics` (a line `NAME VALUE`, or `NAME{LABELS} VALUE`:
/// the first one, e.g. the first queue's IMAP figures).
pub async fn metric(web: SocketAddr, name: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("http://{web}/metrics"))
        .bearer_auth(RIG_AGENT_KEY)
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("a body");
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            rest.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

/// APPENDs `mails` to `user`'s `mailbox` on one session, in order.
pub async fn append_all(stack: &Stack, user: &str, mailbox: &str, mails: &[Vec<u8>]) {
    let mut session = imap_login(stack, user).await;
    for raw in mails {
        session
            .append(mailbox, None, None, raw)
            .await
            .expect("the server takes the APPEND");
    }
    let _ = session.logout().await;
}

/// One message as read back: its UID, raw bytes and flags.
pub struct Stored {
    pub uid: u32,
    pub raw: Vec<u8>,
    pub flags: Vec<String>,
}

impl Stored {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Every message in `user`'s `mailbox` (read-only), and its UIDVALIDITY.
pub async fn read_box(stack: &Stack, user: &str, mailbox: &str) -> (u32, Vec<Stored>) {
    try_read_box(stack, user, mailbox)
        .await
        .unwrap_or_else(|err| panic!("{mailbox} of {user} cannot be read: {err}"))
}

/// As [`read_box`], the server's refusal as an error: for polling a box
/// the test has just deleted and created again, where Dovecot may answer
/// an EXAMINE with "Mailbox was deleted under us" for a moment.
pub async fn try_read_box(
    stack: &Stack,
    user: &str,
    mailbox: &str,
) -> Result<(u32, Vec<Stored>), String> {
    let mut session = imap_login(stack, user).await;
    let selected = session
        .examine(mailbox)
        .await
        .map_err(|err| format!("EXAMINE: {err}"))?;
    let uidvalidity = selected.uid_validity.expect("a UIDVALIDITY");
    let mut mails = Vec::new();
    if selected.exists > 0 {
        let fetches: Vec<_> = session
            .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])")
            .await
            .map_err(|err| format!("UID FETCH: {err}"))?
            .try_collect()
            .await
            .map_err(|err| format!("the FETCH's answers: {err}"))?;
        for f in &fetches {
            // Skips what Dovecot adds unasked when another session (the
            // daemon) changes flags meanwhile: `* N FETCH (FLAGS ...)`.
            let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                continue;
            };
            let flags = f.flags().map(|flag| format!("{flag:?}")).collect();
            mails.push(Stored {
                uid,
                raw: body.to_vec(),
                flags,
            });
        }
    }
    let _ = session.logout().await;
    Ok((uidvalidity, mails))
}

/// A count from the daemon's database (standing for `db`) while it runs;
/// 0 while the database or its tables do not exist yet (or cannot be read).
pub fn db_count_or_zero(db: &Path, sql: &str) -> i64 {
    test_database(db).count_or_zero(sql, &[])
}
