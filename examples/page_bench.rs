//! Benchmark of the status page: requests per second and p99 latency of
//! `/t/TOKEN` over a database of 100,000 tickets (by default).
//!
//! ```text
//! apt-get install wrk        # the load generator (Debian's package)
//! cargo run --release --example page_bench -- --tickets 100000
//! ```
//!
//! It fills `target/bench/page-N.db` once through the store's public API
//! (`ingest_batch`, the IMAP path: one transaction per 1,000 mails; every
//! ticket gets its confirmation, every 4th a customer follow-up with a
//! quote, every 3rd an agent's reply), reuses it on later runs, serves the
//! same router the daemon serves (release build) on 127.0.0.1, and drives
//! it with `wrk` over 1,000 ticket links, after a warm-up. It prints the
//! figures; it asserts nothing. `--serve-only` keeps serving for other
//! tools (e.g. `oha`) and writes the links to a file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{TimeZone, Utc};
use clap::Parser;

use postdesk::domain::TicketNumber;
use postdesk::imap::{FetchedMail, ImapBoard};
use postdesk::ingest::Pipeline;
use postdesk::settings::Settings;
use postdesk::store::Store;
use postdesk::tokens::Purpose;

#[derive(Parser)]
#[command(about = "Requests/s and p99 of /t/TOKEN over a filled database")]
struct Args {
    /// Tickets in the database.
    #[arg(long, default_value_t = 100_000)]
    tickets: u32,
    /// The database (filled if it holds fewer tickets).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Seconds of measured load (after 3 s of warm-up).
    #[arg(long, default_value_t = 20)]
    duration: u32,
    /// Open connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// wrk threads (the server shares the machine's cores with them).
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// Serve until interrupted instead of running wrk.
    #[arg(long)]
    serve_only: bool,
}

const AGENT: &str = "agent@bench.test";
const BATCH: usize = 1_000;
const SAMPLED_LINKS: u32 = 1_000;

fn main() -> anyhow::Result<()> {
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
    let links = sample_links(&store, args.tickets)?;
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    println!(
        "database: {} ({} tickets, {:.0} MB); {} ticket links sampled",
        db.display(),
        ticket_count(&store)?,
        size as f64 / 1e6,
        links.len()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve_and_measure(store, settings, links, &args))
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

fn ticket_count(store: &Store) -> anyhow::Result<i64> {
    Ok(store.store_metrics()?.tickets_by_status.values().sum())
}

/// Fills the database up to `tickets` through `ingest_batch`.
fn fill(store: &Store, pipeline: &Pipeline, tickets: u32) -> anyhow::Result<()> {
    let have = u32::try_from(ticket_count(store)?).unwrap_or(0);
    if have >= tickets {
        return Ok(());
    }
    let started = Instant::now();
    let mut uid = store.checkpoint("bench")?.map(|c| c.last_uid).unwrap_or(0);
    let base = Utc
        .with_ymd_and_hms(2024, 1, 1, 8, 0, 0)
        .single()
        .context("a start date")?;
    let mut next = have + 1;
    while next <= tickets {
        let last = (next + BATCH as u32 - 1).min(tickets);
        let mut mails = Vec::with_capacity(BATCH * 2);
        for n in next..=last {
            uid += 1;
            mails.push(FetchedMail::whole(uid, new_ticket_mail(n)));
        }
        // Follow-ups come after their tickets, in the same batch.
        for n in next..=last {
            if n % 4 == 0 {
                uid += 1;
                mails.push(FetchedMail::whole(uid, follow_up_mail(n)));
            }
            if n % 3 == 0 {
                uid += 1;
                mails.push(FetchedMail::whole(uid, agent_reply_mail(pipeline, n)?));
            }
        }
        let now = base + chrono::Duration::minutes(i64::from(next));
        store.ingest_batch(pipeline, "bench", 1, &mails[..], now)?;
        next = last + 1;
        if (last as usize).is_multiple_of(10 * BATCH) || last == tickets {
            println!(
                "filled {last} of {tickets} tickets in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn customer(n: u32) -> String {
    format!("customer{}@bench.test", n % 2_000)
}

fn new_ticket_mail(n: u32) -> Vec<u8> {
    format!(
        "From: Customer {c} <{addr}>\r\nTo: tickets@bench.test\r\n\
         Subject: Request {n}: the printer on floor {f} prints blank pages\r\n\
         Message-ID: <bench-{n}@customer.bench.test>\r\nDate: Mon, 1 Jan 2024 08:00:00 +0000\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello,\r\n\r\nsince this morning the printer on floor {f} prints blank pages.\r\n\
         We tried a new cartridge and turning it off and on again.\r\n\r\nThanks,\r\nCustomer {c}\r\n",
        c = n % 2_000,
        addr = customer(n),
        f = n % 7
    )
    .into_bytes()
}

fn follow_up_mail(n: u32) -> Vec<u8> {
    format!(
        "From: Customer {c} <{addr}>\r\nTo: tickets@bench.test\r\n\
         Subject: Re: [Ticket #{n}] Request {n}\r\n\
         Message-ID: <bench-{n}-followup@customer.bench.test>\r\n\
         In-Reply-To: <bench-{n}@customer.bench.test>\r\n\
         Date: Mon, 1 Jan 2024 09:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         It happens on the second floor too.\r\n\r\n\
         On Mon, 1 Jan 2024 at 08:00, Customer {c} wrote:\r\n\
         > since this morning the printer prints blank pages.\r\n",
        c = n % 2_000,
        addr = customer(n),
    )
    .into_bytes()
}

fn agent_reply_mail(pipeline: &Pipeline, n: u32) -> anyhow::Result<Vec<u8>> {
    let signed = pipeline.signer.message_id(
        TicketNumber(i64::from(n)),
        Purpose::Notification,
        Some(AGENT),
        &pipeline.domain,
    )?;
    Ok(format!(
        "From: Alice Agent <{AGENT}>\r\nTo: tickets@bench.test\r\n\
         Subject: Re: [Ticket #{n}] New request\r\nMessage-ID: <bench-{n}-agent@bench.test>\r\n\
         In-Reply-To: <{signed}>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello,\r\n\r\nplease try the driver from our intranet and tell us if it helps.\r\n"
    )
    .into_bytes())
}

/// Ticket links from the confirmations of tickets spread over the range.
fn sample_links(store: &Store, tickets: u32) -> anyhow::Result<Vec<String>> {
    let step = (tickets / SAMPLED_LINKS).max(1);
    let mut links = Vec::new();
    for n in (1..=tickets).step_by(step as usize) {
        let Some(detail) = store.ticket_detail(TicketNumber(i64::from(n)))? else {
            continue;
        };
        let token = detail
            .messages
            .iter()
            .filter(|m| m.kind == "confirmation")
            .find_map(|m| m.text.split("/t/").nth(1))
            .map(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_hexdigit)
                    .collect::<String>()
            });
        if let Some(token) = token {
            links.push(format!("/t/{token}"));
        }
    }
    if links.is_empty() {
        bail!("no ticket links found in the confirmations");
    }
    Ok(links)
}

async fn serve_and_measure(
    store: Arc<Store>,
    settings: Settings,
    links: Vec<String>,
    args: &Args,
) -> anyhow::Result<()> {
    // The daemon's own accept loop (timeouts, connection cap), as served.
    let mut settings = settings;
    settings.web.listen = "127.0.0.1:0".to_string();
    let servers = postdesk::web::Servers::bind(&settings.web).await?;
    let base = format!("http://{}", servers.addr()?);
    let stop = tokio_util::sync::CancellationToken::new();
    let server = {
        let stop = stop.clone();
        tokio::spawn(async move {
            servers
                .serve(store, &settings, Arc::new(ImapBoard::default()), stop)
                .await
        })
    };
    let script = std::env::temp_dir().join(format!("page-bench-{}.lua", std::process::id()));
    std::fs::write(&script, lua_script(&links))?;
    let first = format!("{base}{}", links[0]);
    let status = plain_get(&first).await?;
    println!("GET {first} -> {status}");
    if args.serve_only {
        let list = script.with_extension("urls");
        let urls: Vec<String> = links.iter().map(|l| format!("{base}{l}")).collect();
        std::fs::write(&list, urls.join("\n"))?;
        println!(
            "serving on {base}; links in {}; Ctrl-C stops",
            list.display()
        );
        tokio::signal::ctrl_c().await?;
        stop.cancel();
        let _ = server.await;
        return Ok(());
    }
    let (threads, connections, duration) = (args.threads, args.connections, args.duration);
    let warm = run_wrk(threads, connections, 3, &script, &base)
        .await
        .context("cannot run wrk: install it with `apt-get install wrk`")?;
    if !warm.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&warm.stderr));
    }
    let run = run_wrk(threads, connections, duration, &script, &base).await?;
    stop.cancel();
    let _ = server.await;
    let _ = std::fs::remove_file(&script);
    let report = String::from_utf8_lossy(&run.stdout).into_owned();
    println!("{report}");
    let rps = find_after(&report, "Requests/sec:").unwrap_or("?");
    let p99 = report
        .lines()
        .find(|l| l.trim_start().starts_with("99%"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    let errors = report.contains("Non-2xx") || report.contains("Socket errors");
    println!(
        "/t/TOKEN over {} tickets: {rps} requests/s, p99 {p99} (wrk -t{threads} -c{connections} \
         -d{duration}s, server and wrk on {} cores){}",
        thousands(args.tickets),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if errors {
            "; wrk reported errors (see above)"
        } else {
            ""
        }
    );
    println!(
        "resident memory of the server process: {}",
        resident_memory()
    );
    Ok(())
}

/// wrk with `--latency` over the script's links, off the async threads.
async fn run_wrk(
    threads: u32,
    connections: u32,
    seconds: u32,
    script: &Path,
    base: &str,
) -> anyhow::Result<std::process::Output> {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(base);
    Ok(tokio::task::spawn_blocking(move || command.output()).await??)
}

/// 100000 → "100,000".
fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn find_after<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
}

/// Each wrk connection walks the sampled links in turn.
fn lua_script(links: &[String]) -> String {
    let list: Vec<String> = links.iter().map(|l| format!("  \"{l}\",")).collect();
    format!(
        "local paths = {{\n{}\n}}\nlocal i = math.random(#paths)\n\
         request = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n",
        list.join("\n")
    )
}

/// One GET over a plain socket, to check the link answers before the run.
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

fn resident_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.trim_start_matches("VmRSS:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}
