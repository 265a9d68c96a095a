//! Shared by the `bench_*` examples: the mail stack from `scripts/mailstack
//! env`, the daemon as a child process (`postdesk run --config FILE`) with
//! its resident memory from /proc, plain IMAP clients, a discarding SMTP
//! sink, and the figure lines that `scripts/bench` collects into a table.
//! Benchmarks print figures; they assert nothing about time.

#![allow(dead_code)]

pub mod cpu;
pub mod inbox;
pub mod mails;
pub mod sink;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::TryStreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The private mail stack (`eval "$(scripts/mailstack env DIR)"`).
#[derive(Debug, Clone)]
pub struct Stack {
    pub host: String,
    pub imap_port: u16,
    pub smtp_port: u16,
    pub password: String,
}

impl Stack {
    pub fn from_env() -> anyhow::Result<Stack> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!(
                    "{name} is not set: run scripts/bench, or eval \"$(scripts/mailstack env DIR)\""
                )
            })
        };
        Ok(Stack {
            host: var("MAILSTACK_HOST")?,
            imap_port: var("MAILSTACK_IMAP_PORT")?.parse()?,
            smtp_port: var("MAILSTACK_SMTP_PORT")?.parse()?,
            password: var("MAILSTACK_PASSWORD")?,
        })
    }
}

/// What the daemon's config file says beyond the stack.
pub struct DaemonConfig<'a> {
    pub support: &'a str,
    pub agents: &'a [&'a str],
    pub smtp_port: u16,
    pub db: &'a Path,
    /// limits.auto_replies_per_hour (the default is 10).
    pub auto_replies_per_hour: u32,
}

impl<'a> DaemonConfig<'a> {
    /// The benchmarks' usual daemon: one agent, the default limit of
    /// automatic replies, its mail sent to the SMTP port given (a sink's).
    pub fn usual(support: &'a str, smtp_port: u16, db: &'a Path) -> DaemonConfig<'a> {
        DaemonConfig {
            support,
            agents: &["agent@example.test"],
            smtp_port,
            db,
            auto_replies_per_hour: 10,
        }
    }
}

/// Writes a config for a daemon on `cfg.support`'s INBOX over plain IMAP
/// on loopback (as the raw client reads it), IDLE on.
pub fn write_config(stack: &Stack, cfg: &DaemonConfig, path: &Path) -> anyhow::Result<()> {
    let agents: Vec<String> = cfg.agents.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!(
        r#"[support]
address = "{support}"
name = "Bench Support"
agents = [{agents}]
public_url = "http://127.0.0.1:8025"

[imap]
host = "{host}"
port = {imap}
tls = "none"
username = "{support}"
password = "{password}"
idle = true
poll_seconds = 1
timeout_seconds = 30

[smtp]
host = "{host}"
port = {smtp}
tls = "none"
timeout_seconds = 30

[database]
path = "{db}"

[web]
listen = "127.0.0.1:0"

[limits]
auto_replies_per_hour = {rate}
"#,
        support = cfg.support,
        agents = agents.join(", "),
        host = stack.host,
        imap = stack.imap_port,
        password = stack.password,
        smtp = cfg.smtp_port,
        db = cfg.db.display(),
        rate = cfg.auto_replies_per_hour,
    );
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `postdesk run` as a child process; SIGKILLed by pid if dropped running.
pub struct Daemon {
    child: Child,
    pub started: Instant,
}

/// Resident memory of a process, from /proc/PID/status, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Rss {
    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

impl Daemon {
    /// Starts `postdesk run --config CONFIG`, its log going to LOG.
    pub fn spawn(postdesk: &Path, config: &Path, log: &Path) -> anyhow::Result<Daemon> {
        let log_file = fs::File::create(log)?;
        let started = Instant::now();
        let child = Command::new(postdesk)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", postdesk.display()))?;
        Ok(Daemon { child, started })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the daemon has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the daemon exited early ({status}); see its log");
        }
        Ok(())
    }

    pub fn rss(&self) -> anyhow::Result<Rss> {
        rss_of(self.pid())
    }

    /// CPU seconds the daemon has used so far.
    pub fn cpu(&self) -> f64 {
        cpu_seconds(self.pid()).unwrap_or(f64::NAN)
    }

    /// SIGTERM by pid, then wait up to 10 s (SIGKILL after that).
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("bench: the daemon (pid {pid}) did not stop within 10 s; killing it");
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn rss_of(pid: u32) -> anyhow::Result<Rss> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Rss {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    })
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(stat_line(&stat).1)
}

/// The command name and the CPU seconds (user + system) of one line of
/// `/proc/PID/stat` or `/proc/PID/task/TID/stat`.
fn stat_line(stat: &str) -> (&str, f64) {
    // The command name is in parentheses and may hold spaces or ')'.
    let (head, rest) = stat.rsplit_once(')').unwrap_or_default();
    let name = head.split_once('(').map_or("?", |(_, n)| n);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
    // USER_HZ is 100 on Linux.
    (name, (ticks(11) + ticks(12)) / 100.0)
}

/// CPU seconds of each of a process's live threads so far, summed by
/// thread name (`comm`), largest first.
pub fn thread_cpu_by_name(pid: u32) -> Vec<(String, f64)> {
    let mut by_name: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (name, secs) = stat_line(&stat);
        match by_name.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += secs,
            None => by_name.push((name.to_string(), secs)),
        }
    }
    by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_name
}

/// The 1-minute load average and the number of CPUs, as `uptime` shows it.
pub fn load() -> String {
    let avg = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let one = avg.split_whitespace().next().unwrap_or("?");
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("load {one} on {cpus} CPUs")
}

/// Prints one figure for the table of `scripts/bench` (tab-separated:
/// name, value, goal, load) and as a sentence.
pub fn figure(name: &str, value: &str, goal: &str) {
    let load = load();
    println!("{name}: {value}   (goal: {goal}; {load})");
    println!("FIGURE\t{name}\t{value}\t{goal}\t{load}");
}

/// A fresh working directory (emptied if it exists).
pub fn work_dir(path: &Path) -> anyhow::Result<PathBuf> {
    if path.exists() {
        fs::remove_dir_all(path)?;
    }
    fs::create_dir_all(path)?;
    Ok(path.to_path_buf())
}

/// Percentile (0–100) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ------------------------------------------------------------------ IMAP

pub type Session = async_imap::Session<TcpStream>;

/// Logs in over plain IMAP (loopback).
pub async fn imap_login(stack: &Stack, user: &str) -> anyhow::Result<Session> {
    let tcp = TcpStream::connect((stack.host.as_str(), stack.imap_port)).await?;
    tcp.set_nodelay(true)?;
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await?.context("no IMAP greeting")?;
    client
        .login(user, &stack.password)
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("IMAP login as {user}"))
}

/// Deletes everything in `user`'s INBOX.
pub async fn clear_inbox(stack: &Stack, user: &str) -> anyhow::Result<()> {
    let mut session = imap_login(stack, user).await?;
    let mailbox = session.select("INBOX").await?;
    if mailbox.exists > 0 {
        session
            .store("1:*", "+FLAGS.SILENT (\\Deleted)")
            .await?
            .try_collect::<Vec<_>>()
            .await?;
        session.expunge().await?.try_collect::<Vec<_>>().await?;
    }
    session.logout().await?;
    Ok(())
}

/// APPENDs mails to `user`'s INBOX in order, 100 per MULTIAPPEND with
/// LITERAL+ (RFC 3502, 7888) over one raw connection: Dovecot syncs the
/// mailbox once per command, so one APPEND per mail is slow (~50/s here).
pub struct Appender {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    batch: Vec<Vec<u8>>,
    tag: u32,
}

impl Appender {
    pub async fn new(stack: &Stack, user: &str) -> anyhow::Result<Appender> {
        let tcp = TcpStream::connect((stack.host.as_str(), stack.imap_port)).await?;
        let (read, writer) = tcp.into_split();
        let mut appender = Appender {
            reader: tokio::io::BufReader::new(read),
            writer,
            batch: Vec::new(),
            tag: 0,
        };
        let mut greeting = String::new();
        appender.reader.read_line(&mut greeting).await?;
        let login = format!("LOGIN \"{user}\" \"{}\"\r\n", stack.password);
        appender.command(login.as_bytes()).await?;
        Ok(appender)
    }

    /// Sends one tagged command (everything after the tag) and waits for
    /// its OK.
    async fn command(&mut self, rest: &[u8]) -> anyhow::Result<()> {
        self.tag += 1;
        let tag = format!("b{}", self.tag);
        self.writer.write_all(format!("{tag} ").as_bytes()).await?;
        self.writer.write_all(rest).await?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                bail!("the IMAP server closed the connection");
            }
            if let Some(status) = line.strip_prefix(&format!("{tag} ")) {
                if status.starts_with("OK") {
                    return Ok(());
                }
                bail!("the IMAP server answered {}", line.trim_end());
            }
        }
    }

    pub async fn push(&mut self, raw: Vec<u8>) -> anyhow::Result<()> {
        self.batch.push(raw);
        if self.batch.len() == 100 {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut command = b"APPEND INBOX".to_vec();
        for raw in self.batch.drain(..) {
            command.extend_from_slice(format!(" {{{}+}}\r\n", raw.len()).as_bytes());
            command.extend_from_slice(&raw);
        }
        command.extend_from_slice(b"\r\n");
        self.command(&command).await
    }

    /// Appends what is left and logs out.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.flush().await?;
        self.command(b"LOGOUT\r\n").await
    }
}

/// How many messages in `user`'s INBOX are not \Seen, and how many in all.
pub async fn unseen(stack: &Stack, user: &str) -> anyhow::Result<(usize, u32)> {
    let mut session = imap_login(stack, user).await?;
    let mailbox = session.examine("INBOX").await?;
    let found = session.uid_search("UNSEEN").await?;
    session.logout().await?;
    Ok((found.len(), mailbox.exists))
}

/// The machine's CPU time (all CPUs, `/proc/stat`), in seconds.
pub struct MachineCpu {
    pub busy: f64,
    pub iowait: f64,
    pub cpus: usize,
}

impl MachineCpu {
    pub fn now() -> anyhow::Result<MachineCpu> {
        let stat = fs::read_to_string("/proc/stat")?;
        let line = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .ok_or_else(|| anyhow::anyhow!("no cpu line in /proc/stat"))?;
        let ticks: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let field = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / 100.0;
        // user nice system idle iowait irq softirq steal (USER_HZ = 100)
        let busy = [0, 1, 2, 5, 6, 7].into_iter().map(field).sum();
        let cpus = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        Ok(MachineCpu {
            busy,
            iowait: field(4),
            cpus,
        })
    }

    /// The time spent since `before`.
    pub fn since(&self, before: &MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy - before.busy,
            iowait: self.iowait - before.iowait,
            cpus: self.cpus,
        }
    }
}
