//! Ingest on PostgreSQL beside SQLite (issue 15 §4): the issue-6 mail set
//! (`bench_support::mails`, the same seed every run) APPENDed to K support
//! mailboxes, split by customer (a customer's replies land in the mailbox
//! of the mail they answer, behind it), then K release daemons started at
//! once, daemon i configured with every queue but reading only mailbox i
//! over IMAP (so each holds one lease and the K share the work: a mailbox
//! is read by one daemon at a time; `--leases` configures every daemon to
//! read every mailbox and lets the leases share them out), and the clock stopped when every
//! mailbox's UID checkpoint, written in the transaction that stored its
//! last mail, has reached that mail. Figures: mails/s, each mailbox's
//! finish, peak RSS (VmHWM) and CPU per daemon, bytes stored per mail.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::config::{self, checkpoint_key};
use super::db::{Db, fresh_postgres};
use super::{free_port, holder_pid, load_now, postdesk, server_cpu};
use crate::support::mails::{Generator, Mix};
use crate::support::sink::Sink;
use crate::support::{Appender, Daemon, Stack, figure, imap_login, work_dir};

#[derive(Args)]
pub struct IngestArgs {
    /// A scratch directory (emptied) for configs, logs and SQLite files.
    #[arg(long)]
    work: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    mails: usize,
    /// Daemon counts on PostgreSQL (one mailbox each).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    daemons: Vec<usize>,
    /// Leave out the one daemon on SQLite.
    #[arg(long)]
    no_sqlite: bool,
    /// Every daemon configured to read every mailbox: the leases (fair
    /// share, handed over one at a time) decide who reads which, instead
    /// of daemon i reading mailbox i only.
    #[arg(long)]
    leases: bool,
    #[arg(long, default_value_t = 6)]
    seed: u64,
    /// The PostgreSQL cluster's directory (scripts/pgcluster): its
    /// server's CPU time is then counted too.
    #[arg(long)]
    pg_dir: Option<PathBuf>,
}

/// The mail set as delivered to one layout's mailboxes.
struct Filled {
    /// Per mailbox: mails and the UID of the last.
    mailboxes: Vec<(usize, u32)>,
    replies: usize,
    bytes: usize,
    append: Duration,
}

/// One run's results.
struct Outcome {
    label: String,
    daemons: usize,
    per_mailbox: Vec<usize>,
    secs: f64,
    finished: Vec<f64>,
    /// (peak RSS MiB, CPU s) per daemon.
    usage: Vec<(f64, f64)>,
    /// CPU seconds of the PostgreSQL server during the run.
    server_cpu: Option<f64>,
    stored_kb_per_mail: f64,
    load_at_start: String,
    leases: bool,
}

pub fn run(rt: &tokio::runtime::Runtime, postdesk: &Path, args: &IngestArgs) -> anyhow::Result<()> {
    let stack = Stack::from_env()?;
    let work = work_dir(&args.work)?;
    let admin = std::env::var("POSTDESK_TEST_POSTGRES")
        .context("POSTDESK_TEST_POSTGRES is not set: eval \"$(scripts/pgcluster env DIR)\"")?;
    let sink = rt.block_on(Sink::start())?;
    let mut layouts: Vec<(bool, usize)> = Vec::new();
    if !args.no_sqlite {
        layouts.push((false, 1));
    }
    layouts.extend(args.daemons.iter().map(|k| (true, (*k).max(1))));
    let mut outcomes = Vec::new();
    for (on_pg, k) in layouts {
        let mailboxes: Vec<String> = (1..=k)
            .map(|i| format!("t{}@example.test", 10 + i))
            .collect();
        let filled = rt.block_on(fill(&stack, &mailboxes, args))?;
        println!(
            "{} mails ({:.1} MB, {} replies) appended to {} mailbox(es) ({}) in {:.1} s",
            args.mails,
            filled.bytes as f64 / 1e6,
            filled.replies,
            k,
            per_mailbox(&filled),
            filled.append.as_secs_f64()
        );
        let name = if on_pg {
            format!("pg{k}")
        } else {
            "sqlite".to_string()
        };
        let dir = work.join(&name);
        std::fs::create_dir_all(&dir)?;
        let db = if on_pg {
            Db::Postgres(fresh_postgres(&admin, &format!("bench_ingest_{name}"))?)
        } else {
            Db::Sqlite(dir.join("postdesk.db"))
        };
        let setup = Setup {
            postdesk,
            stack: &stack,
            smtp_port: sink.port,
            mailboxes: &mailboxes,
            db: &db,
            dir: &dir,
        };
        let sent_before = sink.accepted();
        let outcome = one_run(&setup, &filled, args)?;
        println!(
            "the SMTP sink accepted {} outgoing mails during the run (not waited for)",
            sink.accepted() - sent_before
        );
        outcomes.push(outcome);
    }
    report(&outcomes, args.mails);
    Ok(())
}

/// Empties the mailboxes and APPENDs the mail set, each mail to the
/// mailbox of its customer (`c{N}@…`: N modulo the mailboxes).
async fn fill(stack: &Stack, mailboxes: &[String], args: &IngestArgs) -> anyhow::Result<Filled> {
    let mut appenders = Vec::new();
    for mailbox in mailboxes {
        crate::support::clear_inbox(stack, mailbox).await?;
        appenders.push(Appender::new(stack, mailbox).await?);
    }
    let customers = (args.mails / 4).max(1) as u32;
    let mut generator = Generator::new(
        args.seed,
        Mix::realistic(customers),
        "tickets@example.test",
        "customers.test",
        "pgbench",
    );
    let started = Instant::now();
    let now = chrono::Utc::now();
    let (mut bytes, mut replies) = (0, 0);
    let mut counts = vec![0usize; mailboxes.len()];
    for _ in 0..args.mails {
        let mail = generator.next(now);
        let customer: usize = (mail.from.strip_prefix('c'))
            .and_then(|rest| rest.split('@').next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("an unexpected customer address {}", mail.from))?;
        let i = customer % mailboxes.len();
        bytes += mail.raw.len();
        replies += usize::from(mail.is_reply);
        counts[i] += 1;
        appenders[i].push(mail.raw).await?;
    }
    for appender in appenders {
        appender.finish().await?;
    }
    let append = started.elapsed();
    let mut filled = Vec::new();
    for (mailbox, count) in mailboxes.iter().zip(counts) {
        let mut session = imap_login(stack, mailbox).await?;
        let selected = session.select("INBOX").await?;
        session.logout().await?;
        if selected.exists as usize != count {
            bail!("{mailbox} holds {} mails, not {count}", selected.exists);
        }
        filled.push((count, selected.uid_next.context("no UIDNEXT")? - 1));
    }
    Ok(Filled {
        mailboxes: filled,
        replies,
        bytes,
        append,
    })
}

fn per_mailbox(filled: &Filled) -> String {
    let counts: Vec<String> = filled
        .mailboxes
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    counts.join(" + ")
}

/// What one run is given.
struct Setup<'a> {
    postdesk: &'a Path,
    stack: &'a Stack,
    smtp_port: u16,
    mailboxes: &'a [String],
    db: &'a Db,
    dir: &'a Path,
}

/// Configs, schema (`postdesk migrate`, not timed), then K daemons at once
/// until every mailbox's checkpoint reached its last UID.
fn one_run(setup: &Setup, filled: &Filled, args: &IngestArgs) -> anyhow::Result<Outcome> {
    let k = setup.mailboxes.len();
    let mut configs = Vec::new();
    for i in 0..k {
        let config = setup.dir.join(format!("d{}.toml", i + 1));
        let journal = setup.dir.join(format!("d{}.journal.db", i + 1));
        let listen = format!("127.0.0.1:{}", free_port()?);
        let reads: Vec<usize> = if args.leases {
            (0..k).collect()
        } else {
            vec![i]
        };
        config::write(
            setup.stack,
            &config::Daemon {
                mailboxes: setup.mailboxes,
                reads: &reads,
                db: setup.db,
                journal: &journal,
                smtp_port: setup.smtp_port,
                listen: &listen,
                auto_replies_per_hour: 10,
            },
            &config,
        )?;
        configs.push(config);
    }
    postdesk(setup.postdesk, &["migrate"], &configs[0], &[])?;
    let mut reader = setup.db.reader()?;
    let keys: Vec<String> = (setup.mailboxes.iter().enumerate())
        .map(|(i, m)| checkpoint_key(i, m, &setup.stack.host))
        .collect();
    let pg_dir = args
        .pg_dir
        .as_deref()
        .filter(|_| matches!(setup.db, Db::Postgres(_)));
    let server_before = pg_dir.and_then(server_cpu);
    let load_at_start = load_now();
    let started = Instant::now();
    let mut daemons = Vec::new();
    for (i, config) in configs.iter().enumerate() {
        let log = setup.dir.join(format!("d{}.log", i + 1));
        daemons.push(Daemon::spawn(setup.postdesk, config, &log)?);
    }
    let finished = wait_for_checkpoints(&mut daemons, &mut reader, &keys, filled, started)?;
    let secs = started.elapsed().as_secs_f64();
    let server_cpu = server_before.and_then(|before| Some(server_cpu(pg_dir?)? - before));
    let usage: Vec<(f64, f64)> = (daemons.iter())
        .map(|d| (d.rss().map(|r| r.hwm_mib()).unwrap_or(f64::NAN), d.cpu()))
        .collect();
    for (mailbox, holder) in reader.lease_holders()? {
        let daemon = holder_pid(&holder)
            .and_then(|pid| daemons.iter().position(|d| d.pid() == pid))
            .map_or("another".to_string(), |i| format!("daemon {}", i + 1));
        println!("lease on {mailbox}: {daemon} ({holder})");
    }
    for daemon in daemons {
        daemon.stop()?;
    }
    reader.counts()?.check(args.mails, filled.replies)?;
    let stored = reader.size_bytes(setup.db)?;
    Ok(Outcome {
        label: setup.db.label().to_string(),
        daemons: k,
        per_mailbox: filled.mailboxes.iter().map(|(n, _)| *n).collect(),
        secs,
        finished,
        usage,
        server_cpu,
        stored_kb_per_mail: stored as f64 / 1e3 / args.mails as f64,
        load_at_start,
        leases: args.leases && k > 1,
    })
}

/// Polls the checkpoints every 20 ms; when each mailbox's reached its last
/// UID, in seconds from `started`.
fn wait_for_checkpoints(
    daemons: &mut [Daemon],
    reader: &mut super::db::Reader,
    keys: &[String],
    filled: &Filled,
    started: Instant,
) -> anyhow::Result<Vec<f64>> {
    let mut finished: Vec<Option<f64>> = vec![None; keys.len()];
    let deadline = started + Duration::from_secs(3600);
    while finished.iter().any(Option::is_none) {
        for daemon in daemons.iter_mut() {
            daemon.check_alive()?;
        }
        if Instant::now() > deadline {
            bail!("the daemons did not ingest everything within an hour");
        }
        let checkpoints = reader.checkpoints();
        for (i, key) in keys.iter().enumerate() {
            let last = i64::from(filled.mailboxes[i].1);
            let reached = checkpoints.iter().any(|(k, uid)| k == key && *uid >= last);
            if reached && finished[i].is_none() {
                finished[i] = Some(started.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(finished.into_iter().flatten().collect())
}

fn report(outcomes: &[Outcome], mails: usize) {
    let sqlite_rate = (outcomes.iter())
        .find(|o| o.label == "SQLite")
        .map(|o| mails as f64 / o.secs);
    for o in outcomes {
        let rate = mails as f64 / o.secs;
        let split: Vec<String> = o.per_mailbox.iter().map(usize::to_string).collect();
        let done: Vec<String> = o.finished.iter().map(|s| format!("{s:.1}")).collect();
        let ratio = match sqlite_rate {
            Some(base) if o.label != "SQLite" => format!("; {:.2}x SQLite's", rate / base),
            _ => String::new(),
        };
        figure(
            &format!(
                "ingest on {}, {} daemon(s), {} mailbox(es) ({} mails; {}), to tickets with confirmations queued",
                o.label,
                o.daemons,
                o.daemons,
                split.join(" + "),
                if o.leases {
                    "every daemon may read each, the leases share them out"
                } else {
                    "daemon i reads mailbox i"
                }
            ),
            &format!(
                "{rate:.0} mails/s ({:.2} s, mailboxes done at {} s{ratio}; {:.1} KB stored per mail; {} at start)",
                o.secs,
                done.join(" / "),
                o.stored_kb_per_mail,
                o.load_at_start
            ),
            "reference",
        );
        let peaks: Vec<String> = o.usage.iter().map(|(m, _)| format!("{m:.1}")).collect();
        let cpus: Vec<String> = o.usage.iter().map(|(_, c)| format!("{c:.1}")).collect();
        let cpu_ms = o.usage.iter().map(|(_, c)| c).sum::<f64>() * 1e3 / mails as f64;
        let server = o.server_cpu.map_or(String::new(), |s| {
            format!(
                "; PostgreSQL server CPU {s:.1} s ({:.2} ms per mail)",
                s * 1e3 / mails as f64
            )
        });
        figure(
            &format!(
                "ingest on {}, {} daemon(s): peak RSS (VmHWM) per daemon; CPU per daemon",
                o.label, o.daemons
            ),
            &format!(
                "{} MB; CPU {} s ({cpu_ms:.2} ms per mail in all){server}",
                peaks.join(" / "),
                cpus.join(" / ")
            ),
            "<= 30 MB",
        );
    }
}
