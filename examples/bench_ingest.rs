//! Ingest benchmark (issue #6): APPENDs realistic mails to the support
//! mailbox, measures the raw rate of a minimal async-imap client doing
//! `UID FETCH 1:* BODY.PEEK[]` on that mailbox, then starts the release
//! daemon (`postdesk run`, a child process) on a fresh database and times
//! it until every mail is a ticket or a follow-up with its confirmation
//! queued (the UID checkpoint, written in the same transaction, has reached
//! the last UID). Then runs `bench_floor` (issue 16 §1), the least a durable
//! store must write, on the same mails in the same batches with the same
//! SQLite settings, three times (the median counts), the same for its
//! ticketing shape (what a helpdesk's store must keep to read its mail
//! back: tickets, their lists, threading, search), and `bench_work`,
//! postdesk's own pure pipeline on the same mails with no database, three
//! times (the median counts; then once split into its stages). Prints the
//! rates, the ratios daemon/floor and daemon/raw, the limit of a durable
//! daemon doing postdesk's work on two cores (the slower of its two
//! stages), with either floor's writes, and the daemon's ratio to each, bytes stored per mail and the
//! daemon's peak RSS. Then the whole job: the daemon runs on until the
//! SMTP sink has every mail it queued, and a minimal SMTP client (the
//! sending floor) sends the same mails to the same sink.
//!
//! Run it through `scripts/bench ingest` (which starts the mail stack and
//! builds), or by hand with the stack's environment:
//! `target/release/examples/bench_ingest --postdesk target/dist/postdesk --work DIR`
//! (`cargo build --profile dist --bin postdesk` first: the shipped build)

#[path = "bench_support/limits.rs"]
mod limits;
#[path = "bench_support/mod.rs"]
mod support;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::TryStreamExt;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use support::mails::{Generator, Mix};
use support::sink::Sink;
use support::{Appender, Daemon, DaemonConfig, Stack, figure, imap_login};

#[derive(Parser)]
struct Args {
    /// The release `postdesk` binary.
    #[arg(long)]
    postdesk: PathBuf,
    /// A scratch directory (emptied) for the database, config and log.
    #[arg(long)]
    work: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    mails: usize,
    /// The support mailbox (emptied first).
    #[arg(long, default_value = "tickets@example.test")]
    support: String,
    /// Raw fetch runs after one warm-up; the best is reported.
    #[arg(long, default_value_t = 3)]
    raw_runs: usize,
    #[arg(long, default_value_t = 6)]
    seed: u64,
    /// Runs of the floor (the median counts).
    #[arg(long, default_value_t = 3)]
    floor_runs: usize,
    /// Runs of the pure pipeline, `bench_work` (the median counts).
    #[arg(long, default_value_t = 3)]
    work_runs: usize,
    /// Seconds the daemon may keep running after the ingest until the
    /// sink has every outgoing mail it queued: the whole job (stored and
    /// sent) and the outbox's own rate after the ingest (0: not measured).
    #[arg(long, default_value_t = 300)]
    send_timeout: u64,
    /// The `bench_work` to run (default: the one beside this program);
    /// `scripts/bench` gives the one built like the daemon (profile dist).
    #[arg(long)]
    bench_work: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::from_env()?;
    let work = support::work_dir(&args.work)?;

    let mails_file = work.join("mails.bin");
    let expected = fill_mailbox(&stack, &args, &mails_file).await?;
    let raw = raw_fetch_rate(&stack, &args).await?;

    let sink = Sink::start().await?;
    let db = work.join("postdesk.db");
    let config = work.join("postdesk.toml");
    support::write_config(
        &stack,
        &DaemonConfig::usual(&args.support, sink.port, &db),
        &config,
    )?;
    let machine_before = support::MachineCpu::now()?;
    let bench_before = support::cpu::process_cpu();
    let mut daemon = Daemon::spawn(&args.postdesk, &config, &work.join("daemon.log"))?;
    println!("daemon started (pid {})", daemon.pid());
    let run = wait_for_checkpoint(&mut daemon, &db, expected.last_uid).await?;
    let peak = daemon.rss()?;
    let cpu = daemon.cpu();
    let machine = support::MachineCpu::now()?.since(&machine_before);
    let threads = support::thread_cpu_by_name(daemon.pid());
    let bench_cpu = support::cpu::process_cpu() - bench_before;
    let secs = run.done.as_secs_f64();
    let rate = args.mails as f64 / secs;

    let counts = Counts::read(&db)?;
    let sent = sink.accepted();
    let (unseen, exists) = support::unseen(&stack, &args.support).await?;
    // The sender has the writer to itself after the ingest: the rest of
    // the outbox goes at the outbox's own rate, and the whole job (every
    // mail stored and every mail it made sent) ends with its last mail.
    let all_sent = if args.send_timeout > 0 {
        let deadline = Instant::now() + Duration::from_secs(args.send_timeout);
        while sink.accepted() < counts.outbox as u64 && Instant::now() < deadline {
            daemon.check_alive()?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some((sink.accepted(), daemon.started.elapsed().as_secs_f64()))
    } else {
        None
    };
    daemon.stop()?;
    let sending_floor = if all_sent.is_some() {
        let outgoing = outgoing_mails(&db)?;
        let took = support::sink::send_floor(sink.port, &outgoing).await?;
        Some((outgoing.len(), took.as_secs_f64()))
    } else {
        None
    };
    let stored = stored_bytes(&db)?;
    let floor = limits::floor(args.floor_runs, "plain", &mails_file, &work)?;
    let ticketing = limits::floor(args.floor_runs, "ticketing", &mails_file, &work)?;
    // A reply the floor failed to thread would pass for a cheaper ticket.
    if ticketing.tickets != Some(counts.tickets) {
        bail!(
            "the ticketing floor made {:?} tickets, the daemon {}: it threads otherwise, so \
             it would not be the same work",
            ticketing.tickets,
            counts.tickets
        );
    }
    let daemon_counts = limits::Stored {
        tickets: counts.tickets,
        confirmations: counts.confirmations,
        outbox: counts.outbox,
    };
    let pure = limits::work(
        args.bench_work.as_deref(),
        args.work_runs,
        &mails_file,
        &config,
        &daemon_counts,
    )?;
    if pure.counts_differ {
        bail!(
            "bench_work's counts differ from the daemon's (see its lines above): its in-memory \
             desk did not answer as the store does, so its figures would not be of the \
             daemon's work"
        );
    }

    println!(
        "mails: {} ({:.1} MB, {} replies, {} with a 200 KB attachment), appended in {:.1} s",
        args.mails,
        expected.bytes as f64 / 1e6,
        expected.replies,
        expected.attachments,
        expected.append.as_secs_f64()
    );
    println!(
        "daemon: first batch committed {:.2} s after start, all committed at {:.2} s; \
         by then {sent} of {} outgoing mails were sent; on the server {unseen} of {exists} \
         mails were still unseen a moment later",
        run.first.as_secs_f64(),
        secs,
        counts.outbox,
    );
    println!(
        "daemon CPU time until all committed: {cpu:.2} s ({:.2} ms per mail)",
        cpu * 1000.0 / args.mails as f64
    );
    // Whether the two cores were the limit: the machine's busy time over
    // the ingest, the daemon's and this benchmark's (its SMTP sink) parts;
    // the rest is Dovecot serving the fetch, and the kernel.
    println!(
        "machine during the ingest: {:.2} of {} CPUs busy, {:.2} in I/O wait; daemon {:.2}, \
         this benchmark {:.2}, the rest (Dovecot, kernel) {:.2} CPUs",
        machine.busy / secs,
        machine.cpus,
        machine.iowait / secs,
        cpu / secs,
        bench_cpu / secs,
        (machine.busy - cpu - bench_cpu) / secs,
    );
    let threads: Vec<String> = threads
        .iter()
        .map(|(name, t)| format!("{name} {:.2}", t / secs))
        .collect();
    println!(
        "daemon's threads during the ingest, CPUs: {}",
        threads.join(", ")
    );
    counts.check(args.mails, expected.replies)?;
    figure(
        "ingest: raw IMAP fetch (async-imap UID FETCH 1:* BODY.PEEK[])",
        &format!(
            "{:.0} mails/s ({:.0} MB/s, {:.2} s)",
            raw.rate,
            raw.mb_per_s,
            raw.best.as_secs_f64()
        ),
        "reference",
    );
    figure(
        &format!(
            "ingest: daemon, {} mails to tickets/follow-ups with confirmations queued",
            args.mails
        ),
        &format!("{rate:.0} mails/s ({secs:.2} s from start)"),
        "reference",
    );
    floor_figure(
        "ingest: floor (bench_floor: raw bytes, message row, outbox row; same batches, WAL, synchronous=FULL), median",
        &floor,
        args.mails,
        "reference",
    );
    floor_figure(
        "ingest: ticketing floor (bench_floor --shape ticketing: the floor, and tickets with the customer's and the status list by activity, messages by ticket, replies threaded by In-Reply-To, the first text part in FTS5), median",
        &ticketing,
        args.mails,
        "reference (the true limit of a helpdesk's store)",
    );
    figure(
        "ingest: daemon stored per mail (database after checkpoint / mails)",
        &format!("{:.1} KB", stored as f64 / 1e3 / args.mails as f64),
        "reference",
    );
    figure(
        "ingest: daemon rate / floor rate",
        &format!("{:.3}", rate * floor.secs / args.mails as f64),
        ">= 0.5",
    );
    figure(
        "ingest: daemon rate / ticketing floor rate",
        &format!("{:.3}", rate * ticketing.secs / args.mails as f64),
        "reference",
    );
    figure(
        "ingest: daemon rate / raw fetch rate",
        &format!("{:.3}", rate / raw.rate),
        "reference",
    );
    let pure_rate = args.mails as f64 / pure.secs;
    figure(
        "ingest: postdesk's pure pipeline alone (parse, classify, thread, decide, compose; no database), median",
        &format!(
            "{pure_rate:.0} mails/s ({:.2} s; {:.3} ms CPU per mail)",
            pure.secs,
            pure.cpu_secs * 1000.0 / args.mails as f64
        ),
        "reference",
    );
    work_figures(args.mails as f64, rate, &floor, &pure, "the floor's");
    work_figures(
        args.mails as f64,
        rate,
        &ticketing,
        &pure,
        "the ticketing floor's",
    );
    if let Some((accepted, until)) = all_sent {
        let after = accepted.saturating_sub(sent);
        figure(
            "outbox: mails sent to the SMTP sink after the ingest (the outbox to itself)",
            &format!(
                "{:.0} mails/s ({after} in {:.2} s)",
                after as f64 / (until - secs),
                until - secs
            ),
            "reference",
        );
        if let Some((count, floor_secs)) = sending_floor {
            let floor_rate = count as f64 / floor_secs;
            figure(
                "outbox: sending floor (a minimal SMTP client: the same mails, one connection, no database, no journal)",
                &format!("{floor_rate:.0} mails/s ({count} in {floor_secs:.2} s)"),
                "reference",
            );
            figure(
                "outbox: its rate after the ingest / the sending floor",
                &format!("{:.3}", after as f64 / (until - secs) / floor_rate),
                "reference",
            );
            // Storing and sending share the two cores; the floors one after
            // the other is what a store and a client that never overlap
            // would take.
            let serial = ticketing.secs + floor_secs;
            figure(
                "whole job: the ticketing floor then the sending floor, one after the other",
                &format!(
                    "{:.0} mails/s ({serial:.2} s); the daemon reaches {:.3} of it",
                    args.mails as f64 / serial,
                    serial / until
                ),
                "reference",
            );
        }
        figure(
            "whole job: every mail stored and every outgoing mail sent",
            &format!(
                "{:.0} mails/s ({accepted} of {} sent {until:.2} s from start)",
                args.mails as f64 / until,
                counts.outbox
            ),
            "reference",
        );
        if accepted < counts.outbox as u64 {
            bail!(
                "the sink had {accepted} of {} outgoing mails after --send-timeout",
                counts.outbox
            );
        }
    }
    figure(
        "memory: daemon peak RSS (VmHWM) during the ingest",
        &format!("{:.1} MB", peak.hwm_mib()),
        "<= 30 MB",
    );
    Ok(())
}

/// A floor's rate as a figure.
fn floor_figure(name: &str, floor: &limits::Floor, mails: usize, goal: &str) {
    figure(
        name,
        &format!(
            "{:.0} mails/s ({:.2} s; {:.1} KB stored per mail)",
            mails as f64 / floor.secs,
            floor.secs,
            floor.bytes as f64 / 1e3 / mails as f64
        ),
        goal,
    );
}

/// Every outgoing mail the daemon queued, in its order.
fn outgoing_mails(db: &std::path::Path) -> anyhow::Result<Vec<support::sink::Outgoing>> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut statement =
        conn.prepare("SELECT envelope_from, recipients, raw FROM outbox ORDER BY id")?;
    let rows = statement.query_map([], |r| {
        let recipients: String = r.get(1)?;
        Ok(support::sink::Outgoing {
            from: r.get(0)?,
            to: recipients.split(',').map(str::to_string).collect(),
            raw: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The database's size once its WAL is checkpointed into it (the daemon
/// has stopped).
fn stored_bytes(db: &std::path::Path) -> anyhow::Result<u64> {
    let conn = Connection::open(db)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    Ok(std::fs::metadata(db)?.len())
}

/// The limit of a durable daemon doing the pure pipeline's work, with
/// `floor`'s writes, on two cores: it prepares a mail on one core while it decides and
/// writes the one before on the other (deciding needs the store's answer
/// for the mails before it: threading, ticket numbers, rate limits, so
/// deciding and writing stay in series), so it goes no faster than the
/// slower of the two stages: preparing, or deciding plus the floor's
/// writes. An upper bound: it counts no hand-over, no lock, no lookup.
fn work_figures(
    mails: f64,
    daemon_rate: f64,
    floor: &limits::Floor,
    pure: &limits::Work,
    whose: &str,
) {
    let writer_stage = pure.deciding_cpu + floor.secs;
    let slower_stage = pure.preparing_cpu.max(writer_stage);
    let limit = mails / slower_stage;
    figure(
        &format!(
            "ingest: the limit of this design on two cores (a serial writer: the slower stage of preparing, or deciding + {whose} writes)"
        ),
        &format!(
            "{limit:.0} mails/s (preparing {:.3} ms, deciding {:.3} + writing {:.3} ms per mail)",
            pure.preparing_cpu * 1000.0 / mails,
            pure.deciding_cpu * 1000.0 / mails,
            floor.secs * 1000.0 / mails
        ),
        "reference",
    );
    figure(
        &format!("ingest: daemon rate / that limit (with {whose} writes)"),
        &format!("{:.3}", daemon_rate / limit),
        "reference",
    );
}

struct Appended {
    last_uid: u32,
    bytes: usize,
    replies: usize,
    attachments: usize,
    append: Duration,
}

/// Empties the support mailbox and APPENDs the generated mails in order
/// (replies after what they answer); writes them to `mails_file` too, for
/// the floor.
async fn fill_mailbox(
    stack: &Stack,
    args: &Args,
    mails_file: &std::path::Path,
) -> anyhow::Result<Appended> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(mails_file)?);
    support::clear_inbox(stack, &args.support).await?;
    let customers = (args.mails / 4).max(1) as u32;
    let mut generator = Generator::new(
        args.seed,
        Mix::realistic(customers),
        &args.support,
        "customers.test",
        &format!("ingest{}", std::process::id()),
    );
    let mut appender = Appender::new(stack, &args.support).await?;
    let started = Instant::now();
    let (mut bytes, mut replies, mut attachments) = (0, 0, 0);
    let now = chrono::Utc::now();
    for _ in 0..args.mails {
        let mail = generator.next(now);
        bytes += mail.raw.len();
        replies += usize::from(mail.is_reply);
        attachments += usize::from(mail.has_attachment);
        file.write_all(&u32::try_from(mail.raw.len())?.to_le_bytes())?;
        file.write_all(&mail.raw)?;
        appender.push(mail.raw).await?;
    }
    appender.finish().await?;
    file.flush()?;
    let append = started.elapsed();
    let mut session = imap_login(stack, &args.support).await?;
    let mailbox = session.select("INBOX").await?;
    session.logout().await?;
    if mailbox.exists as usize != args.mails {
        bail!(
            "the support mailbox holds {} mails, not {}",
            mailbox.exists,
            args.mails
        );
    }
    let last_uid = mailbox.uid_next.context("no UIDNEXT")? - 1;
    Ok(Appended {
        last_uid,
        bytes,
        replies,
        attachments,
        append,
    })
}

struct Raw {
    best: Duration,
    rate: f64,
    mb_per_s: f64,
}

/// The best of `raw_runs` timed `UID FETCH 1:* BODY.PEEK[]` (after one
/// untimed warm-up), from sending the command to the last byte.
async fn raw_fetch_rate(stack: &Stack, args: &Args) -> anyhow::Result<Raw> {
    let mut best: Option<(Duration, usize, usize)> = None;
    for run in 0..=args.raw_runs {
        let mut session = imap_login(stack, &args.support).await?;
        session.select("INBOX").await?;
        let started = Instant::now();
        let (mut count, mut bytes) = (0usize, 0usize);
        {
            let mut fetches = session.uid_fetch("1:*", "BODY.PEEK[]").await?;
            while let Some(fetch) = fetches.try_next().await? {
                if let Some(body) = fetch.body() {
                    count += 1;
                    bytes += body.len();
                }
            }
        }
        let took = started.elapsed();
        session.logout().await?;
        if count != args.mails {
            bail!("the raw fetch got {count} mails, not {}", args.mails);
        }
        println!(
            "raw fetch {}: {count} mails in {:.2} s",
            if run == 0 {
                "warm-up".to_string()
            } else {
                format!("run {run}")
            },
            took.as_secs_f64()
        );
        if run > 0 && best.is_none_or(|(b, _, _)| took < b) {
            best = Some((took, count, bytes));
        }
    }
    let (best, count, bytes) = best.context("no raw fetch run")?;
    Ok(Raw {
        best,
        rate: count as f64 / best.as_secs_f64(),
        mb_per_s: bytes as f64 / 1e6 / best.as_secs_f64(),
    })
}

struct Run {
    first: Duration,
    done: Duration,
}

/// Polls the checkpoint (one row, read-only) every 10 ms until it reaches
/// `last_uid`: the batch that holds the last mail has committed, and with
/// it every ticket, follow-up and outbox row.
async fn wait_for_checkpoint(
    daemon: &mut Daemon,
    db: &std::path::Path,
    last_uid: u32,
) -> anyhow::Result<Run> {
    let deadline = Instant::now() + Duration::from_secs(3600);
    let mut conn: Option<Connection> = None;
    let mut first = None;
    loop {
        daemon.check_alive()?;
        if Instant::now() > deadline {
            bail!("the daemon did not ingest everything within an hour");
        }
        if conn.is_none() && db.exists() {
            conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).ok();
        }
        if let Some(c) = &conn {
            let uid: Option<u32> = c
                .query_row(
                    "SELECT last_uid FROM imap_checkpoints WHERE mailbox = 'INBOX'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .unwrap_or(None);
            // The checkpoint of a first start moves with its last batch
            // only (the mail below it is the backlog): the first batch is
            // seen by its rows.
            if first.is_none()
                && c.query_row("SELECT EXISTS (SELECT 1 FROM raw_mails)", [], |r| r.get(0))
                    .unwrap_or(false)
            {
                first = Some(daemon.started.elapsed());
            }
            if uid.is_some_and(|u| u >= last_uid) {
                return Ok(Run {
                    first: first.unwrap_or_default(),
                    done: daemon.started.elapsed(),
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the database holds after the run (read-only).
struct Counts {
    raw: i64,
    tickets: i64,
    inbound: i64,
    confirmations: i64,
    outbox: i64,
    quarantined: i64,
}

impl Counts {
    fn read(db: &std::path::Path) -> anyhow::Result<Counts> {
        let c = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let one = |sql: &str| -> anyhow::Result<i64> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
        Ok(Counts {
            raw: one("SELECT count(*) FROM raw_mails")?,
            tickets: one("SELECT count(*) FROM tickets")?,
            inbound: one("SELECT count(*) FROM messages WHERE direction = 'in'")?,
            confirmations: one("SELECT count(*) FROM outbox WHERE kind = 'confirmation'")?,
            outbox: one("SELECT count(*) FROM outbox")?,
            quarantined: one("SELECT count(*) FROM quarantine")?,
        })
    }

    /// Every mail a ticket or a follow-up, every new ticket confirmed.
    fn check(&self, mails: usize, replies: usize) -> anyhow::Result<()> {
        println!(
            "database: {} raw mails, {} tickets, {} inbound messages, {} confirmations, \
             {} outbox rows, {} quarantined",
            self.raw, self.tickets, self.inbound, self.confirmations, self.outbox, self.quarantined
        );
        let new = (mails - replies) as i64;
        if self.raw != mails as i64
            || self.inbound != mails as i64
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
