//! The limits `bench_ingest` measures in the same run, on the same mails
//! (issue 16 §1): `bench_floor` (the least a durable store must write) and
//! `bench_work` (postdesk's own pure pipeline, no database). Each runs as a
//! child process beside this example, several times; the median run
//! counts. Their own lines are echoed, their last tagged line read.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

pub struct Floor {
    pub secs: f64,
    pub bytes: u64,
    /// The tickets a ticketing floor made (None for the plain floor).
    pub tickets: Option<i64>,
}

/// Runs `bench_floor` (beside this example) `runs` times on the mails
/// file, as the floor of `shape` (`plain` or `ticketing`); the median run.
pub fn floor(runs: usize, shape: &str, mails: &Path, work: &Path) -> anyhow::Result<Floor> {
    let exe = std::env::current_exe()?.with_file_name("bench_floor");
    let mut done = Vec::new();
    for run in 1..=runs.max(1) {
        let mut command = Command::new(&exe);
        command
            .arg("--mails-file")
            .arg(mails)
            .arg("--db")
            .arg(work.join(format!("floor-{shape}.db")))
            .arg("--shape")
            .arg(shape);
        let name = format!("{shape} floor run {run}");
        let last = tagged_run(&mut command, "floor", &name, "FLOOR")?;
        let fields: Vec<&str> = last.split('\t').collect();
        let [secs, bytes, tickets] = fields[..] else {
            bail!("a malformed FLOOR line: {last}");
        };
        let tickets: i64 = tickets.parse()?;
        done.push(Floor {
            secs: secs.parse()?,
            bytes: bytes.parse()?,
            tickets: (tickets >= 0).then_some(tickets),
        });
    }
    done.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let median = done.len() / 2;
    Ok(done.swap_remove(median))
}

pub struct Work {
    pub secs: f64,
    pub cpu_secs: f64,
    /// Thread CPU seconds of the preparing stage (parse, classify, strip).
    pub preparing_cpu: f64,
    /// Thread CPU seconds of `Pipeline::decide` (thread, apply, compose).
    pub deciding_cpu: f64,
    /// Whether any run found other counts than the daemon stored.
    pub counts_differ: bool,
}

/// What the daemon stored, for `bench_work` to check its counts against.
pub struct Stored {
    pub tickets: i64,
    pub confirmations: i64,
    pub outbox: i64,
}

/// Runs `bench_work` (beside this example) `runs` times on the mails file
/// with the daemon's `config`; the median run. Then once more with
/// `--split` (threading and apply timed apart from composing: extra work,
/// so not a run for the rate), its lines echoed only.
pub fn work(
    exe: Option<&Path>,
    runs: usize,
    mails: &Path,
    config: &Path,
    stored: &Stored,
) -> anyhow::Result<Work> {
    let exe = match exe {
        Some(exe) => exe.to_path_buf(),
        None => std::env::current_exe()?.with_file_name("bench_work"),
    };
    let expect = format!(
        "{},{},{}",
        stored.tickets, stored.confirmations, stored.outbox
    );
    let command = || {
        let mut command = Command::new(&exe);
        command
            .arg("--mails-file")
            .arg(mails)
            .arg("--config")
            .arg(config)
            .arg("--expect")
            .arg(&expect);
        command
    };
    let mut done = Vec::new();
    for run in 1..=runs.max(1) {
        let (last, differ) = work_run(&mut command(), &format!("work run {run}"))?;
        let fields: Vec<f64> = last
            .split('\t')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("a malformed WORK line")?;
        let [secs, cpu_secs, preparing_cpu, deciding_cpu] = fields[..] else {
            bail!("a WORK line of {} fields, not 4", fields.len());
        };
        done.push(Work {
            secs,
            cpu_secs,
            preparing_cpu,
            deciding_cpu,
            counts_differ: differ,
        });
    }
    let (_, split_differ) = work_run(command().arg("--split"), "work split run")?;
    let differ = split_differ || done.iter().any(|w| w.counts_differ);
    done.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let median = done.len() / 2;
    let mut median = done.swap_remove(median);
    median.counts_differ = differ;
    Ok(median)
}

/// One `bench_work` run: its WORK line, and whether it said its counts
/// differ from the daemon's.
fn work_run(command: &mut Command, label: &str) -> anyhow::Result<(String, bool)> {
    let differ = std::cell::Cell::new(false);
    let last = tagged_run_seeing(command, "work", label, "WORK", |line| {
        if line.starts_with("WORK COUNTS DIFFER") {
            differ.set(true);
        }
    })?;
    Ok((last, differ.get()))
}

/// Runs `command`, echoes its lines after `label`, and returns what
/// follows `TAG\t` on its tagged line.
fn tagged_run(command: &mut Command, name: &str, label: &str, tag: &str) -> anyhow::Result<String> {
    tagged_run_seeing(command, name, label, tag, |_| {})
}

fn tagged_run_seeing(
    command: &mut Command,
    name: &str,
    label: &str,
    tag: &str,
    mut seen: impl FnMut(&str),
) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot run bench_{name}"))?;
    if !out.status.success() {
        bail!(
            "bench_{name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{tag}\t");
    for line in text.lines().filter(|l| !l.starts_with(&prefix)) {
        println!("{label}: {line}");
        seen(line);
    }
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .with_context(|| format!("bench_{name} printed no {tag} line"))
}
