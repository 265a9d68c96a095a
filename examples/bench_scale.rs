//! Scale and idle-memory benchmark (issue #6). Fills a database through the
//! library's real pipeline (`Store::ingest_batch` with `FetchedMail`, the
//! daemon's own call) with realistic mail dated over the past year, and at
//! 1,000, 10,000 and 100,000 tickets times the ingest of a probe of fresh
//! mails (same mix; replies answer mails anywhere in the database) in
//! batches of 50, as the daemon commits them: warm (right after the fill,
//! the database in the kernel's page cache, its WAL checkpointed and
//! emptied, as before each timing) and cold (issue 16 §3: after
//! `sync` and `echo 3 > /proc/sys/vm/drop_caches`, which needs root, and
//! with the store opened afresh, so SQLite's own cache is empty too; the
//! cold probe is skipped with a note when the caches cannot be dropped).
//! Beside it, the durable-write floor (`bench_support/floor_store.rs`):
//! a second database the same fill fills, timed on the same probe mails,
//! so the growth no durable store escapes is printed with postdesk's.
//! Then starts the release
//! daemon on the full database (its mail long sent) with an empty support
//! mailbox and reads its resident memory once idle.
//!
//! `target/release/examples/bench_scale --postdesk target/release/postdesk --work DIR`
//! with the stack's environment (`scripts/bench scale`).

#[path = "bench_support/floor_store.rs"]
mod floor_store;
#[path = "bench_support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;

use floor_store::FloorStore;
use postdesk::imap::FetchedMail;
use postdesk::ingest::Pipeline;
use postdesk::settings::Settings;
use postdesk::store::{IngestReport, Store};
use support::mails::{Generator, Mix};
use support::sink::Sink;
use support::{Daemon, DaemonConfig, Stack, figure};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    postdesk: PathBuf,
    #[arg(long)]
    work: PathBuf,
    /// Ticket counts at which the probe is timed.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    levels: Vec<usize>,
    /// Mails in each timed probe.
    #[arg(long, default_value_t = 1000)]
    probe: usize,
    /// The (empty) support mailbox of the idle daemon.
    #[arg(long, default_value = "t02@example.test")]
    support: String,
    /// How long the daemon idles before its memory is read.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    #[arg(long, default_value_t = 100)]
    seed: u64,
    /// Keep the database of an earlier run with the same --levels and
    /// --seed and go on from there (the generator replays what it holds).
    #[arg(long)]
    reuse: bool,
    /// Skip the idle-memory part.
    #[arg(long)]
    no_idle: bool,
    /// Skip the cold probes.
    #[arg(long)]
    no_cold: bool,
    /// Skip the durable-write floor (a second database the same mails
    /// fill, timed on the same probes: the growth no store escapes).
    #[arg(long)]
    no_floor: bool,
}

/// Commits per probe batch, as the daemon's FETCH batch.
const PROBE_BATCH: usize = 50;
/// Commits per fill batch (the fill is set-up, not measured).
const FILL_BATCH: usize = 500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::from_env()?;
    let work = if args.reuse {
        std::fs::create_dir_all(&args.work)?;
        args.work.clone()
    } else {
        support::work_dir(&args.work)?
    };
    let db = work.join("postdesk.db");
    let config = work.join("postdesk.toml");
    let sink = Sink::start().await?;
    support::write_config(
        &stack,
        &DaemonConfig {
            support: &args.support,
            agents: &["agent@example.test"],
            smtp_port: sink.port,
            db: &db,
            auto_replies_per_hour: 10,
        },
        &config,
    )?;
    let top = args.levels.iter().copied().max().unwrap_or(0);
    let floor_db = work.join("floor.db");
    let mut filler = Filler::new(&config, &db, &floor_db, &args, top)?;
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    for &level in &args.levels {
        let started = Instant::now();
        filler.fill_to(level)?;
        println!(
            "filled to {} tickets ({} mails) in {:.0} s",
            filler.tickets,
            filler.uid,
            started.elapsed().as_secs_f64()
        );
        // Neither probe may pay for earlier writes still in its WAL.
        filler.settle()?;
        warm.push((level, probe_figure(&mut filler, &args, level, "warm")?));
        if !args.no_cold {
            filler.settle()?;
            match drop_caches() {
                Ok(()) => {
                    filler.reopen(&db, &floor_db)?;
                    cold.push((level, probe_figure(&mut filler, &args, level, "cold")?));
                }
                Err(err) => println!("no cold probe: cannot drop the page cache: {err:#}"),
            }
        }
    }
    for (label, runs) in [("warm", &warm), ("cold", &cold)] {
        if let (Some(first), Some(last)) = (runs.first(), runs.last()) {
            let (levels, ours) = (
                format!("{} / at {} tickets", last.0, first.0),
                last.1.postdesk.0 / first.1.postdesk.0,
            );
            figure(
                &format!("scale: per-mail time at {levels}, {label}"),
                &format!(
                    "{ours:.2} wall, {:.2} CPU",
                    last.1.postdesk.1 / first.1.postdesk.1
                ),
                "<= 1.15",
            );
            if let (Some(f0), Some(f1)) = (first.1.floor, last.1.floor) {
                let floor = f1.0 / f0.0;
                figure(
                    &format!("scale: the floor's per-mail time at {levels}, {label}"),
                    &format!("{floor:.2} wall, {:.2} CPU", f1.1 / f0.1),
                    "the limit",
                );
                figure(
                    &format!("scale: postdesk's growth over the floor's, {label}"),
                    &format!("{:.2}", ours / floor),
                    "<= 1.15",
                );
            }
        }
    }
    drop(filler);
    if args.no_idle {
        return Ok(());
    }
    idle_memory(&stack, &args, &config, &db).await
}

/// One probe's figures: postdesk's, then the floor's on the same mails;
/// each (wall, CPU) microseconds per mail.
#[derive(Clone, Copy)]
struct Probed {
    postdesk: (f64, f64),
    /// Bytes postdesk wrote per mail (WAL and checkpoints).
    written: f64,
    floor: Option<(f64, f64)>,
}

/// Times one probe at `level` and prints it as figures.
fn probe_figure(
    filler: &mut Filler,
    args: &Args,
    level: usize,
    label: &str,
) -> anyhow::Result<Probed> {
    let probed = filler.probe(args.probe)?;
    let (wall, cpu) = probed.postdesk;
    println!(
        "{label} probe of {} mails at {level} tickets: {wall:.0} µs per mail (CPU {cpu:.0} µs per mail), \
         {:.1} KB written per mail",
        args.probe,
        probed.written / 1e3
    );
    figure(
        &format!("scale: ingest time per mail with {level} tickets in the database, {label}"),
        &format!("{wall:.0} µs wall, {cpu:.0} µs CPU"),
        "flat",
    );
    if let Some((wall, cpu)) = probed.floor {
        figure(
            &format!("scale: the floor's time per mail beside {level} tickets, {label}"),
            &format!("{wall:.0} µs wall, {cpu:.0} µs CPU"),
            "the limit",
        );
    }
    Ok(probed)
}

/// Copies the database's WAL into it and empties it (TRUNCATE), retrying
/// while its own checkpoint thread is busy.
fn settle(db: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    for _ in 0..50 {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the WAL of {} could not be emptied", db.display())
}

/// Writes every dirty page out and drops the kernel's page cache (root).
fn drop_caches() -> anyhow::Result<()> {
    let status = std::process::Command::new("sync").status()?;
    anyhow::ensure!(status.success(), "sync failed");
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .context("cannot write /proc/sys/vm/drop_caches")
}

/// Marks every queued mail sent (the filled year's mail went out long
/// ago), starts the daemon on the database and reads its memory.
async fn idle_memory(stack: &Stack, args: &Args, config: &Path, db: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    conn.execute(
        "UPDATE outbox SET status = 'sent', attempts = 1, sent_at = created_at
         WHERE status IN ('pending', 'sending')",
        [],
    )?;
    let tickets: i64 = conn.query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    drop(conn);
    let size = std::fs::metadata(db)?.len();
    support::clear_inbox(stack, &args.support).await?;
    let work = config.parent().context("config has a parent")?;
    let mut daemon = Daemon::spawn(&args.postdesk, config, &work.join("daemon.log"))?;
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    daemon.check_alive()?;
    let rss = daemon.rss()?;
    let cpu = daemon.cpu();
    daemon.stop()?;
    println!(
        "idle daemon on {tickets} tickets ({:.0} MB database) after {} s: RSS {:.1} MB, \
         peak {:.1} MB, CPU {cpu:.2} s",
        size as f64 / 1e6,
        args.idle_secs,
        rss.rss_mib(),
        rss.hwm_mib()
    );
    figure(
        &format!("memory: daemon RSS idle with {tickets} tickets in the database"),
        &format!("{:.1} MB (peak {:.1} MB)", rss.rss_mib(), rss.hwm_mib()),
        "< 50 MB",
    );
    Ok(())
}

/// Feeds generated mail through the real pipeline on a simulated clock,
/// and the same mails to the floor's store.
struct Filler {
    store: Store,
    db: PathBuf,
    floor: Option<FloorStore>,
    floor_db: PathBuf,
    pipeline: Pipeline,
    generator: Generator,
    clock: DateTime<Utc>,
    step: chrono::Duration,
    uid: u32,
    tickets: usize,
}

impl Filler {
    fn new(
        config: &Path,
        db: &Path,
        floor_db: &Path,
        args: &Args,
        top: usize,
    ) -> anyhow::Result<Filler> {
        let settings = Settings::load(Some(config))?;
        let store = Store::open(db)?;
        // A reused run has no floor: it would have to be filled again.
        let floor = (!args.no_floor && !args.reuse)
            .then(|| FloorStore::create(floor_db))
            .transpose()?;
        let secret = store.installation_secret()?;
        let pipeline = Pipeline::new(&settings, &secret);
        // About 1.4 mails per ticket (30% replies) over the past year.
        let mails = (top as f64 * 1.5) as i64 + (args.probe * args.levels.len()) as i64;
        let year = chrono::Duration::days(365);
        let mut filler = Filler {
            store,
            db: db.to_path_buf(),
            floor,
            floor_db: floor_db.to_path_buf(),
            pipeline,
            generator: Generator::new(
                args.seed,
                Mix::realistic((top / 4).max(1) as u32),
                &args.support,
                "customers.test",
                &format!("scale{}", args.seed),
            ),
            clock: Utc::now() - year,
            step: year / mails.max(1) as i32,
            uid: 0,
            tickets: 0,
        };
        if args.reuse {
            filler.replay(db)?;
        }
        Ok(filler)
    }

    /// Brings the generator and the clock to where an earlier run left the
    /// database (the same seed makes the same mails).
    fn replay(&mut self, db: &Path) -> anyhow::Result<()> {
        let conn = rusqlite::Connection::open(db)?;
        let last: Option<u32> = conn
            .query_row(
                "SELECT last_uid FROM imap_checkpoints WHERE mailbox = 'bench'",
                [],
                |r| r.get(0),
            )
            .ok();
        let tickets: i64 = conn.query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))?;
        for _ in 0..last.unwrap_or(0) {
            self.clock += self.step;
            self.uid += 1;
            self.generator.next(self.clock);
        }
        self.tickets = tickets as usize;
        println!("reusing {} mails, {} tickets", self.uid, self.tickets);
        Ok(())
    }

    /// Empties postdesk's WAL into its database, and the floor's.
    fn settle(&self) -> anyhow::Result<()> {
        settle(&self.db)?;
        if self.floor.is_some() {
            settle(&self.floor_db)?;
        }
        Ok(())
    }

    /// Opens the store and the floor afresh (empty SQLite page caches).
    fn reopen(&mut self, db: &Path, floor_db: &Path) -> anyhow::Result<()> {
        // Both hold a shared lock on the database's lock file: no conflict.
        self.store = Store::open(db)?;
        if let Some(floor) = self.floor.take() {
            self.floor = Some(floor.reopen(floor_db)?);
        }
        Ok(())
    }

    fn batch(&mut self, size: usize) -> Vec<FetchedMail> {
        (0..size)
            .map(|_| {
                self.clock += self.step;
                self.uid += 1;
                FetchedMail::whole(self.uid, self.generator.next(self.clock).raw)
            })
            .collect()
    }

    /// The same mails in the floor's store, one transaction.
    fn floor_write(&mut self, mails: &[FetchedMail]) -> anyhow::Result<()> {
        if let Some(floor) = &mut self.floor {
            let raws: Vec<&[u8]> = mails.iter().map(|m| m.raw.as_slice()).collect();
            floor.write_batch(&raws, 0)?;
        }
        Ok(())
    }

    fn ingest(&mut self, mails: &[FetchedMail]) -> anyhow::Result<()> {
        let reports = self
            .store
            .ingest_batch(&self.pipeline, "bench", 1, mails, self.clock)?;
        for report in reports {
            match report {
                IngestReport::NewTicket { .. } => self.tickets += 1,
                IngestReport::FollowUp { .. } => {}
                other => anyhow::bail!("a generated mail was not stored: {other:?}"),
            }
        }
        Ok(())
    }

    fn fill_to(&mut self, tickets: usize) -> anyhow::Result<()> {
        while self.tickets < tickets {
            // Enough new mail to reach the level, without overshooting much.
            let size = FILL_BATCH.min(((tickets - self.tickets) as f64 / 0.7).ceil() as usize);
            let batch = self.batch(size.max(1));
            self.ingest(&batch)?;
            self.floor_write(&batch)?;
        }
        Ok(())
    }

    /// Wall and CPU microseconds per mail for `count` mails in batches of
    /// 50, through postdesk, then the same batches through the floor; the
    /// mails are generated before the clock starts.
    fn probe(&mut self, count: usize) -> anyhow::Result<Probed> {
        let batches: Vec<Vec<FetchedMail>> = (0..count.div_ceil(PROBE_BATCH))
            .map(|_| self.batch(PROBE_BATCH))
            .collect();
        let mails = batches.iter().map(Vec::len).sum::<usize>() as f64;
        let timed =
            |filler: &mut Filler, write: fn(&mut Filler, &[FetchedMail]) -> anyhow::Result<()>| {
                let cpu0 = support::cpu::process_cpu();
                let started = Instant::now();
                for batch in &batches {
                    write(filler, batch)?;
                }
                let wall = started.elapsed().as_secs_f64();
                let cpu = support::cpu::process_cpu() - cpu0;
                anyhow::Ok((wall * 1e6 / mails, cpu * 1e6 / mails))
            };
        let written0 = support::cpu::written_bytes();
        let postdesk = timed(self, Filler::ingest)?;
        // postdesk's last checkpoint round must not fall in the floor's time.
        settle(&self.db)?;
        // Its WAL and the checkpoints' copies of it, the settling included.
        let written = (support::cpu::written_bytes() - written0) / mails;
        let floor = match self.floor.is_some() {
            true => Some(timed(self, Filler::floor_write)?),
            false => None,
        };
        Ok(Probed {
            postdesk,
            written,
            floor,
        })
    }
}
