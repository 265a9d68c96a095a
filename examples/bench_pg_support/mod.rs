//! The parts of `bench_pg` (issue 15 §4): [`ingest`] (the issue-6 mail set
//! read by 1, 2, 3 daemons on PostgreSQL beside one on SQLite), [`page`]
//! (`/t/TOKEN` served by two daemons on one PostgreSQL desk beside one on
//! SQLite), with [`db`] (fresh databases, polling) and [`config`] (the
//! daemons' config files). Helpers here run `postdesk` subcommands.
//! Nothing here asserts anything about time.

pub mod config;
pub mod db;
pub mod ingest;
pub mod page;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::support::rss_of;

/// How a one-shot `postdesk` subcommand went.
pub struct Finished {
    pub took: Duration,
    /// The last VmHWM read while it ran (polled every 20 ms), in MiB.
    pub peak_mib: f64,
    pub stdout: String,
}

/// Runs `postdesk ARGS --config CONFIG` with `envs` added, to completion;
/// fails with its output if it fails.
pub fn postdesk(
    postdesk: &Path,
    args: &[&str],
    config: &Path,
    envs: &[(&str, &str)],
) -> anyhow::Result<Finished> {
    let out = tempfile_in(config, "out")?;
    let err = tempfile_in(config, "err")?;
    let started = Instant::now();
    let mut child = Command::new(postdesk)
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(envs.iter().copied())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?)
        .spawn()
        .with_context(|| format!("cannot start {}", postdesk.display()))?;
    let mut peak = 0;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if let Ok(rss) = rss_of(child.id()) {
            peak = peak.max(rss.hwm_kib);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    if !status.success() {
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        bail!(
            "postdesk {} failed ({status}):\n{stdout}\n{stderr}",
            args.join(" ")
        );
    }
    Ok(Finished {
        took,
        peak_mib: peak as f64 / 1024.0,
        stdout,
    })
}

/// A file beside `near` named after it and `suffix`.
fn tempfile_in(near: &Path, suffix: &str) -> anyhow::Result<std::path::PathBuf> {
    let name = near
        .file_name()
        .context("a config file name")?
        .to_string_lossy();
    Ok(near.with_file_name(format!("{name}.{suffix}")))
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The pid in a lease holder's name (`host:pid:id`).
pub fn holder_pid(holder: &str) -> Option<u32> {
    holder.split(':').nth(1)?.parse().ok()
}

/// `load 1.23` from /proc/loadavg (1-minute average).
pub fn load_now() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!("load {}", avg.split_whitespace().next().unwrap_or("?"))
}

/// CPU seconds the PostgreSQL server of cluster DIR has used so far: the
/// postmaster with the backends it has reaped (cutime, cstime) and those
/// still running. None when its postmaster.pid cannot be read.
pub fn server_cpu(cluster: &Path) -> Option<f64> {
    let pid_file = std::fs::read_to_string(cluster.join("data/postmaster.pid")).ok()?;
    let postmaster: u32 = pid_file.lines().next()?.trim().parse().ok()?;
    // Fields after the command name, which is in parentheses: [1] is the
    // parent pid, [11..=14] utime, stime, cutime, cstime (USER_HZ = 100).
    let fields = |pid: &str| -> Option<Vec<f64>> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        Some(
            rest.split_whitespace()
                .map(|f| f.parse().unwrap_or(0.0))
                .collect(),
        )
    };
    let own = fields(&postmaster.to_string())?;
    let mut ticks: f64 = own.get(11..=14)?.iter().sum();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(f) = fields(&name).filter(|f| f.get(1) == Some(&f64::from(postmaster))) {
            ticks += f.get(11..=12).map_or(0.0, |t| t.iter().sum());
        }
    }
    Some(ticks / 100.0)
}
