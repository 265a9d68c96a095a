//! Benchmark of the status page beside two floors of the same server:
//! requests per second, p50 and p99 of `/t/TOKEN` and `/r/TOKEN` over a
//! database of 100,000 tickets (by default), each with its ratio to a
//! bench-only route that returns a fixed 2 KB body (the bare route) and to
//! one that returns it after one indexed read through the pages' own read
//! path (the one-read floor: what any page from the database costs).
//!
//! ```text
//! apt-get install wrk        # the load generator (Debian's package)
//! scripts/bench page         # or: cargo run --release --example page_bench -- --tickets 100000
//! ```
//!
//! It fills `target/bench/page-N.db` once through the store's public API
//! (`ingest_batch`, the IMAP path: one transaction per 1,000 mails; every
//! ticket gets its confirmation, every 4th a customer follow-up with a
//! quote, every 3rd an agent's reply), reuses it on later runs, and serves
//! the daemon's router (release build) through the daemon's own accept
//! loop on 127.0.0.1, with two extra routes the daemon never serves:
//! `/bench/bare` (defined here) and `/bench/read/TOKEN`
//! (`postdesk::web::bench_router`: the ticket link's token looked up as
//! `/t/TOKEN` looks it up). The same `wrk` (same threads, connections,
//! duration, a Lua script walking a list of paths) then drives, in turn,
//! the bare route, the one-read floor over the 1,000 ticket links' tokens,
//! 1,000 ticket links and 1,000 requester links, each after a warm-up. It
//! prints the figures with the load average at the start of each run; it
//! asserts nothing. `--serve-only` keeps serving for other tools (e.g.
//! `oha`) and writes the links to a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;

use postdesk::imap::ImapBoard;
use postdesk::ingest::Pipeline;
use postdesk::settings::Settings;
use postdesk::store::Store;

use fill::{AGENT, fill, sample_links, ticket_count};
use table::{BARE_NAME, FLOOR_NAME, Row, print_table};

#[path = "page_bench_support/fill.rs"]
mod fill;
#[path = "page_bench_support/table.rs"]
mod table;
#[path = "page_bench_support/wrk.rs"]
mod wrk;

#[derive(Parser)]
#[command(
    about = "Requests/s, p50 and p99 of /t/TOKEN and /r/TOKEN beside a bare route and a one-read floor"
)]
struct Args {
    /// Tickets in the database.
    #[arg(long, default_value_t = 100_000)]
    tickets: u32,
    /// The database (filled if it holds fewer tickets).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Seconds of measured load per route (after 3 s of warm-up).
    #[arg(long, default_value_t = 20)]
    duration: u32,
    /// Rounds of (bare route, one-read floor, /t/TOKEN, /r/TOKEN), one
    /// after the other.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Open connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads (the server shares the machine's cores with them).
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Serve until interrupted instead of running wrk.
    #[arg(long)]
    serve_only: bool,
    /// Also time the store reads behind each page alone, on one thread
    /// (no HTTP, no rendering): where a page's time goes.
    #[arg(long)]
    time_reads: bool,
}

fn main() -> anyhow::Result<()> {
    // The daemon's glibc malloc settings, as the daemon sets them first
    // in `main`: the server measured is the one that is run.
    postdesk::allocator::tune();
    let args = Args::parse();
    let db = args.db.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/bench")
            .join(format!("page-{}.db", args.tickets))
    });
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let settings = bench_settings(&db)?;
    let store = Arc::new(Store::open(&db)?);
    let pipeline = Pipeline::new(&settings, "page-bench-secret");
    fill(&store, &pipeline, args.tickets)?;
    let (ticket_links, requester_links) = sample_links(&store, args.tickets)?;
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "database: {} ({} tickets, {:.0} MB); {} ticket and {} requester links sampled",
        db.display(),
        ticket_count(&store)?,
        size as f64 / 1e6,
        ticket_links.len(),
        requester_links.len()
    );
    if args.time_reads {
        time_reads(&store, &ticket_links, &requester_links)?;
    }
    let floor_paths = ticket_links
        .iter()
        .map(|l| l.replacen("/t/", "/bench/read/", 1))
        .collect();
    let targets = vec![
        Target {
            name: BARE_NAME,
            paths: vec![BARE_PATH.to_string()],
        },
        Target {
            name: FLOOR_NAME,
            paths: floor_paths,
        },
        Target {
            name: "/t/TOKEN",
            paths: ticket_links,
        },
        Target {
            name: "/r/TOKEN",
            paths: requester_links,
        },
    ];

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve_and_measure(store, settings, targets, &args))
}

fn bench_settings(db: &Path) -> anyhow::Result<Settings> {
    let env = [
        ("SUPPORT__ADDRESS", "tickets@bench.test".to_string()),
        ("SUPPORT__NAME", "Bench Support".to_string()),
        ("SUPPORT__AGENTS", AGENT.to_string()),
        ("LIMITS__AUTO_REPLIES_PER_HOUR", "1000000000".to_string()),
        ("DATABASE__PATH", db.display().to_string()),
    ];
    let env = env
        .into_iter()
        .map(|(k, v)| (format!("POSTDESK__{k}"), v))
        .collect();
    Ok(Settings::load_with_env(None, env)?)
}

/// Times the store read of each page over its links, after one warm-up
/// pass: microseconds per read, on this thread alone.
fn time_reads(store: &Store, tickets: &[String], requesters: &[String]) -> anyhow::Result<()> {
    let token = |link: &str| link.rsplit('/').next().unwrap_or_default().to_string();
    let tickets: Vec<String> = tickets.iter().map(|l| token(l)).collect();
    let requesters: Vec<String> = requesters.iter().map(|l| token(l)).collect();
    let filter = postdesk::store::TicketFilter::default();
    for pass in ["warm-up", "timed"] {
        let started = Instant::now();
        for t in &tickets {
            store
                .ticket_page(t)?
                .context("a sampled ticket link is unknown")?;
        }
        let per_ticket = started.elapsed().as_secs_f64() * 1e6 / tickets.len() as f64;
        let started = Instant::now();
        for r in &requesters {
            store
                .requester_page(r, filter, 1)?
                .context("a sampled requester link is unknown")?;
        }
        let per_list = started.elapsed().as_secs_f64() * 1e6 / requesters.len() as f64;
        if pass == "timed" {
            println!(
                "store reads alone, one thread: ticket_page {per_ticket:.1} us, \
                 requester_page {per_list:.1} us (load {})",
                wrk::load_average()
            );
        }
    }
    Ok(())
}

/// Where the example (only) serves the bare route: the library's fixed
/// 2 KB bench body, no state, no read.
const BARE_PATH: &str = "/bench/bare";

async fn bare() -> Response {
    let body = axum::body::Bytes::from_static(&postdesk::web::BENCH_BODY);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// What one measured route is: its name in the table and its paths.
struct Target {
    name: &'static str,
    paths: Vec<String>,
}

async fn serve_and_measure(
    store: Arc<Store>,
    settings: Settings,
    targets: Vec<Target>,
    args: &Args,
) -> anyhow::Result<()> {
    // The daemon's router behind the daemon's own accept loop (timeouts,
    // connection cap), with the bare route beside it and the one-read
    // floor among the pages (`bench_router`: the daemon serves neither).
    let mut settings = settings;
    settings.web.listen = "127.0.0.1:0".to_string();
    let servers = postdesk::web::Servers::bind(&settings.web).await?;
    let base = format!("http://{}", servers.addr()?);
    let router = Router::new()
        .route(BARE_PATH, get(bare))
        .merge(postdesk::web::bench_router(
            store,
            &settings,
            Arc::new(ImapBoard::default()),
        ));
    let stop = tokio_util::sync::CancellationToken::new();
    let server = {
        let stop = stop.clone();
        let web = settings.web.clone();
        tokio::spawn(async move { servers.serve_router(router, &web, stop).await })
    };
    let mut scripts = Vec::new();
    for target in &targets {
        let first = format!("{base}{}", target.paths[0]);
        let (status, bytes) = plain_get(&first).await?;
        println!("GET {first} -> {status} ({bytes} bytes in all)");
        let name: String = target
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let script =
            std::env::temp_dir().join(format!("page-bench-{}-{name}.lua", std::process::id()));
        std::fs::write(&script, wrk::lua_script(&target.paths))?;
        scripts.push(script);
    }
    let measured = if args.serve_only {
        serve_only(&base, &targets).await
    } else {
        measure_rounds(&targets, &scripts, &base, args).await
    };
    stop.cancel();
    let _ = server.await;
    for script in &scripts {
        let _ = std::fs::remove_file(script);
    }
    measured
}

/// Serves until Ctrl-C, the URLs of each route in a file.
async fn serve_only(base: &str, targets: &[Target]) -> anyhow::Result<()> {
    let list = std::env::temp_dir().join(format!("page-bench-{}.urls", std::process::id()));
    let urls: Vec<String> = targets
        .iter()
        .flat_map(|t| t.paths.iter().map(|p| format!("{base}{p}")))
        .collect();
    std::fs::write(&list, urls.join("\n"))?;
    println!(
        "serving on {base}; links in {}; Ctrl-C stops",
        list.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// Each round measures every route in turn, the bare route first, then
/// the one-read floor; each route's ratios are to those two of the same
/// round.
async fn measure_rounds(
    targets: &[Target],
    scripts: &[PathBuf],
    base: &str,
    args: &Args,
) -> anyhow::Result<()> {
    let load = wrk::Load {
        threads: args.threads,
        connections: args.connections,
        seconds: args.duration,
    };
    let mut rows = Vec::new();
    for round in 1..=args.rounds {
        let (mut bare, mut floor) = (None, None);
        for (target, script) in targets.iter().zip(scripts) {
            let figures = wrk::measure(load, script, base).await?;
            println!("round {round}, {}:\n{}", target.name, figures.report);
            let bare_rps = *bare.get_or_insert(figures.requests_per_second);
            let floor_rps = match target.name {
                BARE_NAME => f64::NAN,
                _ => *floor.get_or_insert(figures.requests_per_second),
            };
            rows.push(Row {
                round,
                name: target.name,
                bare_rps,
                floor_rps,
                figures,
            });
        }
    }
    print_table(
        &rows,
        &table::Setup {
            tickets: args.tickets,
            threads: args.threads,
            connections: args.connections,
            seconds: args.duration,
        },
    );
    println!(
        "resident memory of the server process: {}",
        resident_memory()
    );
    Ok(())
}

/// One GET over a plain socket, to check a link answers before the run:
/// the status line and the bytes of the whole response.
async fn plain_get(url: &str) -> anyhow::Result<(String, usize)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("an http URL")?;
    let (host, path) = rest.split_once('/').context("a path")?;
    let mut socket = tokio::net::TcpStream::connect(host).await?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    let status = text.lines().next().unwrap_or_default().to_string();
    Ok((status, response.len()))
}

/// VmRSS, and its parts: the heap (RssAnon) and the database's pages the
/// reader connections map (RssFile: the OS page cache's, counted once per
/// mapping that touched them, not memory of the process's own).
fn resident_memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(|| "unknown".to_string(), |v| v.trim().to_string())
    };
    format!(
        "{} (heap and stacks, RssAnon: {}; mapped database pages, RssFile: {})",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:")
    )
}
