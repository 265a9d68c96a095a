//! `/t/TOKEN` and `/r/TOKEN` served by two daemons on one PostgreSQL desk,
//! beside one daemon on SQLite (issue 15 §4; `/r/` since issue 16 §2).
//! The desk is the page benchmark's (`target/bench/page-N.db`, filled once
//! through the store by `page_bench_support/fill.rs`), copied into a fresh
//! PostgreSQL database by `postdesk migrate-db` (timed: that is the
//! migrate-db figure) and into a SQLite file of the run's own; both copies
//! get their queued mail marked sent, so that no daemon sends 100,000s of
//! confirmations while it is measured; the PostgreSQL copy is then
//! vacuumed and analyzed, as after any bulk load (else the planner has no
//! statistics and autovacuum reads the whole desk during the measurement).
//! Daemons are `postdesk run` children with IMAP off. Two wrk processes run
//! at once, each with half the connections: on PostgreSQL one per daemon,
//! on SQLite both at the one daemon (the same client load either way). The
//! routes are measured one after the other on the same daemons.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use postdesk::ingest::Pipeline;
use postdesk::settings::Settings;
use postdesk::store::Store;

use super::config;
use super::db::{Db, fresh_postgres};
use super::{free_port, load_now, postdesk, server_cpu};
use crate::support::{Daemon, Stack, figure, work_dir};
use crate::{fill, wrk};

#[derive(Args)]
pub struct PageArgs {
    /// A scratch directory (emptied): configs, logs, the SQLite copy.
    #[arg(long)]
    work: PathBuf,
    /// Tickets in the desk (target/bench/page-N.db, filled if missing).
    #[arg(long, default_value_t = 20_000)]
    tickets: u32,
    /// Seconds of measured load (after wrk's warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u32,
    /// Open connections in all, split over the two wrk processes.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// The PostgreSQL cluster's directory (scripts/pgcluster): its
    /// server's share of the CPU under load is then printed too.
    #[arg(long)]
    pg_dir: Option<PathBuf>,
}

pub fn run(rt: &tokio::runtime::Runtime, postdesk: &Path, args: &PageArgs) -> anyhow::Result<()> {
    let stack = Stack::from_env()?;
    let admin = std::env::var("POSTDESK_TEST_POSTGRES")
        .context("POSTDESK_TEST_POSTGRES is not set: eval \"$(scripts/pgcluster env DIR)\"")?;
    let work = work_dir(&args.work)?;
    let desk = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench")
        .join(format!("page-{}.db", args.tickets));
    let routes = prepare(&desk, args.tickets)?;
    let mut scripts = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let script = work.join(format!("links-{i}.lua"));
        std::fs::write(&script, wrk::lua_script(&route.links))?;
        scripts.push((route, script));
    }
    let bench = Bench {
        rt,
        postdesk,
        stack: &stack,
        work: &work,
        routes: &scripts,
        args,
    };

    let url = fresh_postgres(&admin, "bench_page")?;
    migrate_db(&bench, &desk, &url)?;
    let pg = Db::Postgres(url);
    let mut reader = pg.reader()?;
    let marked = reader.mark_outbox_sent()?;
    let started = Instant::now();
    reader.vacuum_analyze()?;
    println!(
        "PostgreSQL copy: {marked} queued outgoing mails marked sent; VACUUM (ANALYZE) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(reader);
    bench.serve(&pg, 2)?;

    let copy = work.join("page-sqlite.db");
    let started = Instant::now();
    std::fs::copy(&desk, &copy).with_context(|| format!("cannot copy {}", desk.display()))?;
    let sqlite = Db::Sqlite(copy);
    let marked = sqlite.reader()?.mark_outbox_sent()?;
    println!(
        "SQLite copy made in {:.1} s; {marked} queued outgoing mails marked sent",
        started.elapsed().as_secs_f64()
    );
    bench.serve(&sqlite, 1)
}

/// One page measured: its name in the figures and its sampled links.
struct Route {
    name: &'static str,
    links: Vec<String>,
}

/// Fills the desk (as `page_bench` does, same settings and secret) and
/// samples ticket and requester links from the confirmations, spread over
/// the range; the store is closed again (migrate-db refuses a desk in use).
fn prepare(desk: &Path, tickets: u32) -> anyhow::Result<[Route; 2]> {
    if let Some(dir) = desk.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let env = [
        ("SUPPORT__ADDRESS", "tickets@bench.test".to_string()),
        ("SUPPORT__NAME", "Bench Support".to_string()),
        ("SUPPORT__AGENTS", fill::AGENT.to_string()),
        ("LIMITS__AUTO_REPLIES_PER_HOUR", "1000000000".to_string()),
        ("DATABASE__PATH", desk.display().to_string()),
    ];
    let env = (env.into_iter())
        .map(|(k, v)| (format!("POSTDESK__{k}"), v))
        .collect();
    let settings = Settings::load_with_env(None, env)?;
    let store = Arc::new(Store::open(desk)?);
    let pipeline = Pipeline::new(&settings, "page-bench-secret");
    fill::fill(&store, &pipeline, tickets)?;
    let (ticket_links, requester_links) = fill::sample_links(&store, tickets)?;
    println!(
        "desk: {} ({} tickets, {:.0} MB); {} ticket and {} requester links sampled",
        desk.display(),
        fill::ticket_count(&store)?,
        std::fs::metadata(desk).map(|m| m.len()).unwrap_or(0) as f64 / 1e6,
        ticket_links.len(),
        requester_links.len()
    );
    Ok([
        Route {
            name: "/t/TOKEN",
            links: ticket_links,
        },
        Route {
            name: "/r/TOKEN",
            links: requester_links,
        },
    ])
}

/// What every part of the page run shares.
struct Bench<'a> {
    rt: &'a tokio::runtime::Runtime,
    postdesk: &'a Path,
    stack: &'a Stack,
    work: &'a Path,
    /// Each page and the wrk script that walks its links.
    routes: &'a [(&'a Route, PathBuf)],
    args: &'a PageArgs,
}

/// `postdesk migrate-db` from the desk into `url` (the URL in the
/// environment, out of the process list); its report and time.
fn migrate_db(bench: &Bench, desk: &Path, url: &str) -> anyhow::Result<()> {
    let config = bench.work.join("migrate-db.toml");
    bench.write_config(&Db::Sqlite(desk.to_path_buf()), &config, "127.0.0.1:0")?;
    let load_at_start = load_now();
    let done = postdesk(
        bench.postdesk,
        &["migrate-db"],
        &config,
        &[("POSTDESK_MIGRATE_TO", url)],
    )?;
    print!("{}", done.stdout);
    figure(
        &format!(
            "postdesk migrate-db: a desk of {} tickets from SQLite into an empty PostgreSQL database",
            bench.args.tickets
        ),
        &format!(
            "{:.1} s, peak RSS {:.1} MB (counts and raw-mail checksum compared: equal; {load_at_start} at start)",
            done.took.as_secs_f64(),
            done.peak_mib
        ),
        "reference",
    );
    Ok(())
}

impl Bench<'_> {
    fn write_config(&self, db: &Db, path: &Path, listen: &str) -> anyhow::Result<()> {
        let journal = path.with_extension("journal.db");
        config::write(
            self.stack,
            &config::Daemon {
                mailboxes: &["tickets@bench.test".to_string()],
                reads: &[],
                db,
                journal: &journal,
                smtp_port: self.stack.smtp_port,
                listen,
                auto_replies_per_hour: 10,
            },
            path,
        )
    }

    /// Starts `count` daemons on `db`, drives them with two wrk at once
    /// on each route in turn, prints the figures, stops them.
    fn serve(&self, db: &Db, count: usize) -> anyhow::Result<()> {
        let mut daemons = Vec::new();
        let mut bases = Vec::new();
        for i in 1..=count {
            let name = format!("page-{}-d{i}", db.label().to_lowercase());
            let config = self.work.join(format!("{name}.toml"));
            let listen = format!("127.0.0.1:{}", free_port()?);
            self.write_config(db, &config, &listen)?;
            let log = self.work.join(format!("{name}.log"));
            daemons.push(Daemon::spawn(self.postdesk, &config, &log)?);
            bases.push(format!("http://{listen}"));
        }
        for base in &bases {
            for (route, _) in self.routes {
                let first = route.links.first().context("a sampled link")?;
                self.rt
                    .block_on(wait_for_page(&format!("{base}{first}"), &mut daemons))?;
            }
        }
        let cpu_before: Vec<f64> = daemons.iter().map(Daemon::cpu).collect();
        std::thread::sleep(Duration::from_secs(2));
        let idle: Vec<String> = (daemons.iter().zip(&cpu_before))
            .map(|(d, before)| format!("{:.2}", d.cpu() - before))
            .collect();
        println!(
            "{}: daemons' CPU over 2 idle s before the load: {} s",
            db.label(),
            idle.join(" / ")
        );
        let targets = [bases[0].clone(), bases[bases.len() - 1].clone()];
        for (route, script) in self.routes {
            self.measure(db, &daemons, &targets, route, script)?;
        }
        for daemon in daemons {
            daemon.stop()?;
        }
        Ok(())
    }

    /// Two wrk at once on one route (one per target), and its figure.
    fn measure(
        &self,
        db: &Db,
        daemons: &[Daemon],
        targets: &[String; 2],
        route: &Route,
        script: &Path,
    ) -> anyhow::Result<()> {
        let load = wrk::Load {
            threads: 1,
            connections: (self.args.connections / 2).max(1),
            seconds: self.args.duration,
        };
        let pg_dir = (self.args.pg_dir.as_deref()).filter(|_| matches!(db, Db::Postgres(_)));
        let cpu_at = |daemons: &[Daemon]| -> (f64, Option<f64>) {
            (
                daemons.iter().map(Daemon::cpu).sum(),
                pg_dir.and_then(server_cpu),
            )
        };
        let (before, started) = (cpu_at(daemons), Instant::now());
        let (a, b) = self.rt.block_on(async {
            tokio::join!(
                wrk::measure(load, script, &targets[0]),
                wrk::measure(load, script, &targets[1])
            )
        });
        let (a, b) = (a?, b?);
        let (after, wall) = (cpu_at(daemons), started.elapsed().as_secs_f64());
        let share = |cpu: f64| format!("{:.0}%", cpu * 100.0 / wall);
        let server = match (before.1, after.1) {
            (Some(b0), Some(b1)) => format!(", PostgreSQL server {}", share(b1 - b0)),
            _ => String::new(),
        };
        let cpu = format!(
            "CPU under load (of one core): daemons {}{server}",
            share(after.0 - before.0)
        );
        println!(
            "{} wrk 1 ({}):\n{}wrk 2 ({}):\n{}",
            route.name, targets[0], a.report, targets[1], b.report
        );
        let peaks: Vec<String> = (daemons.iter())
            .map(|d| {
                d.rss()
                    .map_or("?".to_string(), |r| format!("{:.1}", r.hwm_mib()))
            })
            .collect();
        let serving = if daemons.len() == 2 {
            "two daemons, one wrk each"
        } else {
            "one daemon, both wrk at it"
        };
        figure(
            &format!(
                "{} on {} with {} tickets, {serving} (2 x wrk -t1 -c{} -d{}s at once, {} links)",
                route.name,
                db.label(),
                self.args.tickets,
                load.connections,
                load.seconds,
                route.links.len()
            ),
            &format!(
                "{:.0} requests/s ({:.0} + {:.0}), p50 {:.2} / {:.2} ms, p99 {:.2} / {:.2} ms; \
                 peak RSS per daemon {} MB; {cpu}; load {} / {} at the start of each wrk{}",
                a.requests_per_second + b.requests_per_second,
                a.requests_per_second,
                b.requests_per_second,
                a.p50_ms,
                b.p50_ms,
                a.p99_ms,
                b.p99_ms,
                peaks.join(" / "),
                a.load_before,
                b.load_before,
                if a.errors || b.errors {
                    " (wrk saw errors)"
                } else {
                    ""
                }
            ),
            "reference",
        );
        Ok(())
    }
}

/// Waits (up to 2 minutes) until `url` answers 200.
async fn wait_for_page(url: &str, daemons: &mut [Daemon]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for daemon in daemons.iter_mut() {
            daemon.check_alive()?;
        }
        match plain_get(url).await {
            Ok(status) if status.contains(" 200 ") => return Ok(()),
            Ok(status) if Instant::now() > deadline => bail!("GET {url} answered {status}"),
            Err(err) if Instant::now() > deadline => return Err(err.context(format!("GET {url}"))),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One GET over a plain socket: the status line.
async fn plain_get(url: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("an http URL")?;
    let (host, path) = rest.split_once('/').context("a path")?;
    let mut socket = tokio::net::TcpStream::connect(host).await?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_string())
}
