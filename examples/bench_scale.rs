//! Scale and idle-memory benchmark (issue #6). Fills one database per
//! level (1,000, 10,000 and 100,000 tickets) through the library's real
//! pipeline (`Store::ingest_batch` with `FetchedMail`, the daemon's own
//! call) with realistic mail dated over the past year, each from the same
//! seed, and times the ingest of probes of fresh mails (same mix; replies
//! answer mails anywhere in their database) in batches of 50, as the
//! daemon commits them: warm (the database in the kernel's page cache,
//! its WAL checkpointed and emptied and the kernel's dirty pages written
//! out before each timing) and cold (issue 16 §3: after `sync` and
//! `echo 3 > /proc/sys/vm/drop_caches`, which needs root, and with the
//! store opened afresh, so SQLite's own cache is empty too; the cold probe is skipped
//! with a note when the caches cannot be dropped). The levels are probed
//! in turns, for several rounds (`--rounds`, all warm rounds first), and
//! the medians count: this machine's speed drifts by tens of percent over
//! minutes, which a level timed a whole fill after another would carry
//! into the ratio. A desk below the top is restored to its filled state
//! (a copy of its files, its generator's state) before each probe, so
//! each of its probes is of the same mails on the same desk; the top desk
//! grows by its probes, and each figure says at how many tickets.
//! Beside it, the durable-write floor (`bench_support/floor_store.rs`):
//! a second database the same fill fills, timed on the same probe mails,
//! so the growth no durable store escapes is printed with postdesk's; and
//! a third, the floor's ticketing shape (tickets, their lists by activity,
//! threading, search): the growth no helpdesk's store escapes.
//! Then starts the release daemon on the last level's database (its mail
//! long sent) with an empty support mailbox and reads its resident memory
//! once idle.
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

use floor_store::{FloorStore, Shape};
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
    /// Rounds of probes: each round probes every level in turn (every
    /// other round in the other order); all warm rounds, then all cold
    /// ones; the figures are the medians.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The (empty) support mailbox of the idle daemon.
    #[arg(long, default_value = "t02@example.test")]
    support: String,
    /// How long the daemon idles before its memory is read.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    #[arg(long, default_value_t = 100)]
    seed: u64,
    /// Keep the databases of an earlier run with the same --levels,
    /// --seed, --probe and --rounds (the clock's step depends on them) and
    /// go on from there (the generator replays what each holds); a level
    /// below the top, whose files each probe replaced, is filled again.
    #[arg(long)]
    reuse: bool,
    /// Skip the idle-memory part.
    #[arg(long)]
    no_idle: bool,
    /// Skip the cold probes.
    #[arg(long)]
    no_cold: bool,
    /// Skip the durable-write floors (databases the same mails fill,
    /// timed on the same probes: the growth no store escapes).
    #[arg(long)]
    no_floor: bool,
    /// The floors' shapes: `plain` (the floor), `ticketing` (the
    /// least a helpdesk's store keeps).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "plain,ticketing"
    )]
    floors: Vec<Shape>,
}

/// One batch of mails into one store (postdesk's or a floor's), at a time.
type WriteBatch<'a> = dyn Fn(&mut Filler, &[FetchedMail], DateTime<Utc>) -> anyhow::Result<()> + 'a;

/// Commits per probe batch, as the daemon's FETCH batch.
const PROBE_BATCH: usize = 50;
/// Commits per fill batch (the fill is set-up, not measured).
const FILL_BATCH: usize = 500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    // The first level is the smallest and the last the top, whatever the
    // order given.
    args.levels.sort_unstable();
    args.levels.dedup();
    let stack = Stack::from_env()?;
    let work = if args.reuse {
        std::fs::create_dir_all(&args.work)?;
        args.work.clone()
    } else {
        support::work_dir(&args.work)?
    };
    let sink = Sink::start().await?;
    // One desk per level, each filled from the same seed by its own
    // generator (so a reply answers a mail of its own desk) on the same
    // simulated clock, then probed in turns: the machine's speed drifts
    // over minutes, and a level timed long after another would carry that
    // drift into the ratio. A desk below the top goes back to its filled
    // state (files and generator) before each probe, so that ten probes of
    // 1,000 mails do not make a 1,000-ticket desk one of 8,000; the top
    // desk grows by its probes (about 7% at 100,000 tickets; each figure
    // says at how many tickets it was taken).
    let top = args.levels.iter().copied().max().unwrap_or(0);
    // One start for every desk's clock, so that a small desk is the start
    // of the top one.
    let start = Utc::now() - chrono::Duration::days(365);
    let mut desks = Vec::new();
    for &level in &args.levels {
        let dir = work.join(format!("level-{level}"));
        std::fs::create_dir_all(&dir)?;
        let (db, config) = (dir.join("postdesk.db"), dir.join("postdesk.toml"));
        support::write_config(
            &stack,
            &DaemonConfig::usual(&args.support, sink.port, &db),
            &config,
        )?;
        let mut filler = Filler::new(&config, &db, &dir, &args, (top, start))?;
        let started = Instant::now();
        filler.fill_to(level)?;
        println!(
            "filled to {} tickets ({} mails) in {:.0} s",
            filler.tickets,
            filler.uid,
            started.elapsed().as_secs_f64()
        );
        filler.check_floors()?;
        if level < top {
            filler.take_snapshot(&dir.join("snapshot"))?;
        }
        desks.push(Desk {
            level,
            filler,
            config,
            db,
            warm: Vec::new(),
            cold: Vec::new(),
        });
    }
    // Warm means in the kernel's page cache: the fills push each other's
    // pages out, so the top desk is read through once (the others are
    // copied anew before each probe).
    for desk in &desks {
        desk.filler.read_through()?;
    }
    // All warm rounds first: a cold probe drops every desk's pages.
    'rounds: for cold in [false, true] {
        if cold && args.no_cold {
            break;
        }
        let label = if cold { "cold" } else { "warm" };
        for round in 1..=args.rounds {
            // Every other round in the other order, so that no level is
            // always the one probed first.
            let order: Vec<usize> = match round % 2 {
                1 => (0..desks.len()).collect(),
                _ => (0..desks.len()).rev().collect(),
            };
            for i in order {
                let desk = &mut desks[i];
                desk.filler.restore()?;
                // Neither probe may pay for earlier writes still in its
                // WAL, nor for dirty pages the kernel has yet to write.
                desk.filler.settle()?;
                if cold && let Err(err) = drop_caches() {
                    println!("no cold probe: cannot drop the page cache: {err:#}");
                    break 'rounds;
                }
                // SQLite's own caches start empty, warm and cold alike.
                desk.filler.reopen()?;
                let probed = probe(&mut desk.filler, &args, label, round)?;
                match cold {
                    false => desk.warm.push(probed),
                    true => desk.cold.push(probed),
                }
            }
        }
    }
    for desk in &desks {
        for (label, runs) in [("warm", &desk.warm), ("cold", &desk.cold)] {
            level_figures(desk.level, label, &Probed::median(runs));
        }
    }
    if let (Some(first), Some(last)) = (desks.first(), desks.last()) {
        growth_figures(first, last, "warm", |d| &d.warm);
        growth_figures(first, last, "cold", |d| &d.cold);
    }
    let Some(top) = desks.pop() else {
        return Ok(());
    };
    drop(desks);
    drop(top.filler);
    if args.no_idle {
        return Ok(());
    }
    idle_memory(&stack, &args, &top.config, &top.db).await
}

/// One level's database, its filler, and its probes' figures.
struct Desk {
    level: usize,
    filler: Filler,
    config: PathBuf,
    db: PathBuf,
    warm: Vec<Probed>,
    cold: Vec<Probed>,
}

/// One probe's figures: postdesk's, then each floor's on the same mails;
/// each (wall, CPU) microseconds per mail.
#[derive(Clone)]
struct Probed {
    /// The tickets in the desk when the probe began.
    tickets: usize,
    postdesk: (f64, f64),
    /// Bytes postdesk wrote per mail (WAL and checkpoints).
    written: f64,
    floors: Vec<(Shape, (f64, f64))>,
}

impl Probed {
    /// Each figure's median over the rounds (None without rounds).
    fn median(runs: &[Probed]) -> Option<Probed> {
        let first = runs.first()?;
        let median = |get: &dyn Fn(&Probed) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(get).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Some(Probed {
            tickets: median(&|p| p.tickets as f64) as usize,
            postdesk: (median(&|p| p.postdesk.0), median(&|p| p.postdesk.1)),
            written: median(&|p| p.written),
            floors: (first.floors.iter().enumerate())
                .map(|(i, (shape, _))| {
                    let wall = median(&|p| p.floors[i].1.0);
                    (*shape, (wall, median(&|p| p.floors[i].1.1)))
                })
                .collect(),
        })
    }
}

/// Times one probe and prints its line.
fn probe(filler: &mut Filler, args: &Args, label: &str, round: usize) -> anyhow::Result<Probed> {
    let probed = filler.probe(args.probe)?;
    let (wall, cpu) = probed.postdesk;
    let floors: Vec<String> = (probed.floors.iter())
        .map(|(shape, (wall, _))| format!("the {} {wall:.0} µs", shape.name()))
        .collect();
    println!(
        "{label} probe {round} of {} mails at {} tickets: {wall:.0} µs per mail (CPU {cpu:.0} µs per mail), \
         {:.1} KB written per mail; {}",
        args.probe,
        probed.tickets,
        probed.written / 1e3,
        floors.join(", ")
    );
    Ok(probed)
}

/// The medians of one level's probes, as figures.
fn level_figures(level: usize, label: &str, probed: &Option<Probed>) {
    let Some(probed) = probed else { return };
    let (wall, cpu) = probed.postdesk;
    figure(
        &format!(
            "scale: ingest time per mail with {level} tickets in the database, {label}, median"
        ),
        &format!(
            "{wall:.0} µs wall, {cpu:.0} µs CPU, {:.1} KB written (probes at a median of {} tickets)",
            probed.written / 1e3,
            probed.tickets
        ),
        "flat",
    );
    for (shape, (wall, cpu)) in &probed.floors {
        figure(
            &format!(
                "scale: the {}'s time per mail beside {level} tickets, {label}, median",
                shape.name()
            ),
            &format!("{wall:.0} µs wall, {cpu:.0} µs CPU"),
            "the limit",
        );
    }
}

/// The growth from the first level to the last: the ratio of their
/// probes of the same round, the median over the rounds (each round's
/// probes are minutes apart, not a whole fill).
fn growth_figures(first: &Desk, last: &Desk, label: &str, runs: fn(&Desk) -> &Vec<Probed>) {
    let pairs: Vec<(&Probed, &Probed)> = runs(first).iter().zip(runs(last)).collect();
    if pairs.is_empty() {
        return;
    }
    let median = |get: &dyn Fn(&Probed, &Probed) -> f64| {
        let mut values: Vec<f64> = pairs.iter().map(|(a, b)| get(a, b)).collect();
        values.sort_by(f64::total_cmp);
        let shown: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
        (values[values.len() / 2], shown.join(", "))
    };
    let at = |runs: &Vec<Probed>| Probed::median(runs).map_or(0, |p| p.tickets);
    let levels = format!(
        "{} / at {} tickets (probes at a median of {} / {})",
        last.level,
        first.level,
        at(runs(last)),
        at(runs(first))
    );
    let (ours, rounds) = median(&|a, b| b.postdesk.0 / a.postdesk.0);
    let (ours_cpu, _) = median(&|a, b| b.postdesk.1 / a.postdesk.1);
    figure(
        &format!("scale: per-mail time at {levels}, {label}, median of rounds"),
        &format!("{ours:.2} wall ({rounds}), {ours_cpu:.2} CPU"),
        "<= 1.15",
    );
    for (i, (shape, _)) in pairs[0].0.floors.iter().enumerate() {
        let name = shape.name();
        let (floor, rounds) = median(&|a, b| b.floors[i].1.0 / a.floors[i].1.0);
        figure(
            &format!("scale: the {name}'s per-mail time at {levels}, {label}, median of rounds"),
            &format!("{floor:.2} wall ({rounds})"),
            "the limit",
        );
        let (over, rounds) =
            median(&|a, b| (b.postdesk.0 / a.postdesk.0) / (b.floors[i].1.0 / a.floors[i].1.0));
        figure(
            &format!("scale: postdesk's growth over the {name}'s, {label}, median of rounds"),
            &format!("{over:.2} ({rounds})"),
            "<= 1.15",
        );
        // The ratios hide the fixed cost (a store with more work per mail
        // grows less in ratio for the same added pages): the time each
        // adds per mail, side by side.
        let (added, _) = median(&|a, b| b.postdesk.0 - a.postdesk.0);
        let (floor_added, _) = median(&|a, b| b.floors[i].1.0 - a.floors[i].1.0);
        // A ratio only where the floor grew: a flat floor's added time is
        // noise around zero.
        let times = match floor_added > 0.0 {
            true => format!(": {:.2} times the {name}'s", added / floor_added),
            false => String::new(),
        };
        figure(
            &format!(
                "scale: wall time added per mail from {} to {} tickets, {label}: postdesk, the {name}, medians of rounds",
                first.level, last.level
            ),
            &format!("{added:+.0} µs, {floor_added:+.0} µs{times}"),
            "reference",
        );
    }
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

/// A floor's store beside postdesk's, and its file.
struct Floor {
    store: FloorStore,
    db: PathBuf,
}

/// Feeds generated mail through the real pipeline on a simulated clock,
/// and the same mails to each floor's store.
struct Filler {
    store: Store,
    db: PathBuf,
    floors: Vec<Floor>,
    pipeline: Pipeline,
    generator: Generator,
    clock: DateTime<Utc>,
    step: chrono::Duration,
    uid: u32,
    tickets: usize,
    /// The filled state a desk below the top returns to before each probe.
    snapshot: Option<Snapshot>,
}

/// A filled desk's copies of its databases, and its generator's state.
struct Snapshot {
    /// postdesk's database, then each floor's.
    files: Vec<PathBuf>,
    generator: Generator,
    clock: DateTime<Utc>,
    uid: u32,
    tickets: usize,
    /// Each floor's count of mails written (its checkpoint's UID).
    floor_uids: Vec<u32>,
    /// How many times it was restored (names each copy).
    restored: usize,
}

/// Removes a database file and whatever was made beside it (its WAL,
/// shared memory, lock and in-flight files).
fn remove_database(path: &Path) -> anyhow::Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(&*name.to_string_lossy())
        {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

impl Filler {
    fn new(
        config: &Path,
        db: &Path,
        work: &Path,
        args: &Args,
        (top, start): (usize, DateTime<Utc>),
    ) -> anyhow::Result<Filler> {
        let settings = Settings::load(Some(config))?;
        let store = Store::open(db)?;
        // A reused run has no floor: it would have to be filled again.
        let shapes = match args.no_floor || args.reuse {
            true => &[][..],
            false => &args.floors[..],
        };
        let floors = shapes
            .iter()
            .map(|&shape| {
                let db = work.join(format!("floor-{shape:?}.db").to_lowercase());
                anyhow::Ok(Floor {
                    store: FloorStore::create(&db, shape)?,
                    db,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let secret = store.installation_secret()?;
        let pipeline = Pipeline::new(&settings, &secret);
        // About 1.4 mails per ticket (30% replies) over the past year.
        let mails = (top as f64 * 1.5) as i64 + (args.probe * args.rounds * 2) as i64;
        let year = chrono::Duration::days(365);
        let mut filler = Filler {
            store,
            db: db.to_path_buf(),
            floors,
            pipeline,
            generator: Generator::new(
                args.seed,
                Mix::realistic((top / 4).max(1) as u32),
                &args.support,
                "customers.test",
                &format!("scale{}", args.seed),
            ),
            clock: start,
            step: year / mails.max(1) as i32,
            uid: 0,
            tickets: 0,
            snapshot: None,
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

    /// Empties postdesk's WAL into its database, and each floor's, and
    /// has the kernel write out what is dirty (the fill's pages, an earlier
    /// benchmark's files), so that no probe's syncs wait behind it.
    fn settle(&self) -> anyhow::Result<()> {
        settle(&self.db)?;
        for floor in &self.floors {
            settle(&floor.db)?;
        }
        let status = std::process::Command::new("sync").status()?;
        anyhow::ensure!(status.success(), "sync failed");
        Ok(())
    }

    /// Opens the store and the floors afresh (empty SQLite page caches).
    fn reopen(&mut self) -> anyhow::Result<()> {
        // Both hold a shared lock on the database's lock file: no conflict.
        self.store = Store::open(&self.db)?;
        for floor in std::mem::take(&mut self.floors) {
            let store = floor.store.reopen(&floor.db)?;
            self.floors.push(Floor { store, ..floor });
        }
        Ok(())
    }

    /// Fails unless each ticketing floor holds postdesk's tickets (a reply
    /// it did not thread would pass for a cheaper new ticket).
    fn check_floors(&self) -> anyhow::Result<()> {
        for floor in &self.floors {
            if let Some(tickets) = floor.store.tickets()?
                && tickets != self.tickets as i64
            {
                anyhow::bail!(
                    "the ticketing floor holds {tickets} tickets, postdesk {}: it threads \
                     otherwise, so it would not be the same work",
                    self.tickets
                );
            }
        }
        Ok(())
    }

    /// Keeps the filled state: a copy of each database (their WALs
    /// emptied first) in `dir`, and the generator where it stands.
    fn take_snapshot(&mut self, dir: &Path) -> anyhow::Result<()> {
        self.settle()?;
        std::fs::create_dir_all(dir)?;
        let mut files = Vec::new();
        for path in std::iter::once(&self.db).chain(self.floors.iter().map(|f| &f.db)) {
            let kept = dir.join(path.file_name().context("a database has a file name")?);
            std::fs::copy(path, &kept)?;
            files.push(kept);
        }
        self.snapshot = Some(Snapshot {
            files,
            generator: self.generator.clone(),
            clock: self.clock,
            uid: self.uid,
            tickets: self.tickets,
            floor_uids: self.floors.iter().map(|f| f.store.uid()).collect(),
            restored: 0,
        });
        Ok(())
    }

    /// Back to the snapshot, if one was taken: each database copied anew
    /// (under a new name, so the open one is closed only once its
    /// successor is open) and the generator as it was, so the next probe
    /// is of the same mails on the same desk.
    fn restore(&mut self) -> anyhow::Result<()> {
        let Some(snapshot) = &mut self.snapshot else {
            return Ok(());
        };
        snapshot.restored += 1;
        let n = snapshot.restored;
        let fresh = |old: &Path, kept: &Path| -> anyhow::Result<PathBuf> {
            let name = kept.file_stem().context("a snapshot file has a name")?;
            let path = old.with_file_name(format!("{}-{n}.db", name.to_string_lossy()));
            // A WAL left by an interrupted run would be replayed onto the copy.
            remove_database(&path)?;
            std::fs::copy(kept, &path)?;
            anyhow::Ok(path)
        };
        let db = fresh(&self.db, &snapshot.files[0])?;
        let old_db = std::mem::replace(&mut self.db, db);
        self.store = Store::open(&self.db)?;
        remove_database(&old_db)?;
        for (floor, kept) in std::mem::take(&mut self.floors)
            .into_iter()
            .zip(&snapshot.files[1..])
        {
            let db = fresh(&floor.db, kept)?;
            let mut store = floor.store.reopen(&db)?;
            store.set_uid(snapshot.floor_uids[self.floors.len()]);
            remove_database(&floor.db)?;
            self.floors.push(Floor { store, db });
        }
        self.generator = snapshot.generator.clone();
        (self.clock, self.uid, self.tickets) = (snapshot.clock, snapshot.uid, snapshot.tickets);
        Ok(())
    }

    /// Reads every database file of the desk once, so that it is in the
    /// kernel's page cache. A desk with a snapshot needs none: each probe
    /// copies its files anew, which leaves them there.
    fn read_through(&self) -> anyhow::Result<()> {
        if self.snapshot.is_some() {
            return Ok(());
        }
        for path in std::iter::once(&self.db).chain(self.floors.iter().map(|f| &f.db)) {
            let mut file = std::fs::File::open(path)?;
            std::io::copy(&mut file, &mut std::io::sink())?;
        }
        Ok(())
    }

    /// The next `size` mails, and the clock after the last of them.
    fn batch(&mut self, size: usize) -> (Vec<FetchedMail>, DateTime<Utc>) {
        let mails = (0..size)
            .map(|_| {
                self.clock += self.step;
                self.uid += 1;
                FetchedMail::whole(self.uid, self.generator.next(self.clock).raw)
            })
            .collect();
        (mails, self.clock)
    }

    /// The same mails in each floor's store, one transaction each.
    fn floors_write(&mut self, mails: &[FetchedMail]) -> anyhow::Result<()> {
        for i in 0..self.floors.len() {
            self.floor_write(i, mails)?;
        }
        Ok(())
    }

    /// The same mails in the `i`th floor's store, one transaction.
    fn floor_write(&mut self, i: usize, mails: &[FetchedMail]) -> anyhow::Result<()> {
        let raws: Vec<&[u8]> = mails.iter().map(|m| m.raw.as_slice()).collect();
        self.floors[i].store.write_batch(&raws, 0)
    }

    /// The mails through postdesk's pipeline, one transaction, at `now`.
    fn ingest(&mut self, mails: &[FetchedMail], now: DateTime<Utc>) -> anyhow::Result<()> {
        let reports = self
            .store
            .ingest_batch(&self.pipeline, "bench", 1, mails, now)?;
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
            let (batch, now) = self.batch(size.max(1));
            self.ingest(&batch, now)?;
            self.floors_write(&batch)?;
        }
        Ok(())
    }

    /// Wall and CPU microseconds per mail for `count` mails in batches of
    /// 50, through postdesk (each batch at its own time), then the same
    /// batches through each floor; the mails are generated before the
    /// clock starts.
    fn probe(&mut self, count: usize) -> anyhow::Result<Probed> {
        let tickets = self.tickets;
        let batches: Vec<(Vec<FetchedMail>, DateTime<Utc>)> = (0..count.div_ceil(PROBE_BATCH))
            .map(|_| self.batch(PROBE_BATCH))
            .collect();
        let mails = batches.iter().map(|(b, _)| b.len()).sum::<usize>() as f64;
        let timed = |filler: &mut Filler, write: &WriteBatch<'_>| {
            let cpu0 = support::cpu::process_cpu();
            let started = Instant::now();
            for (batch, now) in &batches {
                write(filler, batch, *now)?;
            }
            let wall = started.elapsed().as_secs_f64();
            let cpu = support::cpu::process_cpu() - cpu0;
            anyhow::Ok((wall * 1e6 / mails, cpu * 1e6 / mails))
        };
        let written0 = support::cpu::written_bytes();
        let postdesk = timed(self, &Filler::ingest)?;
        // postdesk's last checkpoint round must not fall in a floor's time.
        settle(&self.db)?;
        // Its WAL and the checkpoints' copies of it, the settling included.
        let written = (support::cpu::written_bytes() - written0) / mails;
        let mut floors = Vec::new();
        for i in 0..self.floors.len() {
            let time = timed(self, &|f: &mut Filler, batch, _| f.floor_write(i, batch))?;
            // Nor a floor's last round in the next floor's.
            settle(&self.floors[i].db)?;
            floors.push((self.floors[i].store.shape(), time));
        }
        Ok(Probed {
            tickets,
            postdesk,
            written,
            floors,
        })
    }
}
