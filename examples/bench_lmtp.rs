//! LMTP latency benchmark (issue 12 §3): customers submit mails over SMTP
//! to the stack's Postfix, which relays a bench-only domain over LMTP
//! (`scripts/mailstack route`) either to the release daemon (IMAP off,
//! `--mode lmtp`) or to a zero-work echo LMTP server in this process that
//! answers 250 and at once submits a reply to the customer (`--mode echo`:
//! the floor of the same stack). Each customer's INBOX is read with the
//! same tight poll as `bench_latency`'s (`bench_support/inbox.rs`), whose
//! IMAP IDLE path `scripts/bench lmtp` runs beside this. Prints p50 and p99 of submit (the server's 250
//! after DATA) → the answer in the customer's INBOX.
//!
//! `target/release/examples/bench_lmtp --postdesk target/release/postdesk --work DIR
//!  --mode lmtp|echo [--mails 100 --rate 2]` with the stack's environment.

#[path = "bench_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use postdesk::lmtp::{DataReader, DataStep, Protocol, Step};
use support::inbox::{Arrivals, watch_inboxes};
use support::{Daemon, Stack, figure, percentile};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    postdesk: PathBuf,
    #[arg(long)]
    work: PathBuf,
    /// "lmtp" (the daemon) or "echo" (the zero-work floor).
    #[arg(long, default_value = "lmtp")]
    mode: String,
    #[arg(long, default_value_t = 100)]
    mails: usize,
    /// Mails submitted per second, evenly spaced.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    #[arg(long, default_value_t = 5)]
    customers: u32,
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
}

type Mailer = AsyncSmtpTransport<Tokio1Executor>;
/// When each mail's submission was accepted (250 after DATA).
type Sent = Arc<Mutex<BTreeMap<usize, Instant>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::from_env()?;
    let stack_dir = PathBuf::from(std::env::var("MAILSTACK_DIR").context("MAILSTACK_DIR")?);
    let work = support::work_dir(&args.work)?;
    let run = format!("{:x}", std::process::id());
    let customers: Vec<String> = (1..=args.customers)
        .map(|n| format!("customer{n}@example.test"))
        .collect();
    for user in &customers {
        support::clear_inbox(&stack, user).await?;
    }
    let mailer = Mailer::builder_dangerous(stack.host.clone())
        .port(stack.smtp_port)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let domain = format!("{}.bench.test", args.mode);
    route(
        &stack_dir,
        &domain,
        Some(&format!("lmtp:inet:127.0.0.1:{port}")),
    )?;
    let support = format!("help@{domain}");
    let mut daemon = None;
    if args.mode == "echo" {
        tokio::spawn(echo_server(listener, mailer.clone()));
    } else {
        drop(listener); // the daemon binds the port next
        let config = write_config(&stack, &support, port, &work)?;
        daemon = Some(Daemon::spawn(
            &args.postdesk,
            &config,
            &work.join("daemon.log"),
        )?);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let result = measure(&args, &stack, &mailer, &customers, &support, &run).await;
    route(&stack_dir, &domain, None)?;
    if let Some(daemon) = daemon {
        daemon.stop()?;
    }
    let latencies = result?;
    let what = match args.mode.as_str() {
        "echo" => "LMTP echo floor (zero work)",
        _ => "LMTP: SMTP submit (accepted) -> confirmation in the customer's INBOX",
    };
    let what = format!("{what}, {} mails at {}/s", args.mails, args.rate);
    let goal = if args.mode == "echo" {
        "reference"
    } else {
        "<= 0.1 s"
    };
    figure(
        &format!("{what}, p50"),
        &format!("{:.3} s", percentile(&latencies, 50.0)),
        goal,
    );
    figure(
        &format!("{what}, p99"),
        &format!("{:.3} s", percentile(&latencies, 99.0)),
        "reference",
    );
    Ok(())
}

/// One warm-up mail, then `args.mails` evenly spaced; the sorted latencies.
async fn measure(
    args: &Args,
    stack: &Stack,
    mailer: &Mailer,
    customers: &[String],
    support: &str,
    run: &str,
) -> anyhow::Result<Vec<f64>> {
    for (round, count) in [("w", 1), ("m", args.mails)] {
        let suffix = format!("-{round}{run}");
        let (sent, arrivals) = (Sent::default(), Arrivals::default());
        let readers =
            watch_inboxes(stack, customers, &suffix, count, &arrivals, args.poll_ms).await?;
        let started = Instant::now();
        for i in 0..count {
            let at = started + Duration::from_secs_f64(i as f64 / args.rate);
            tokio::time::sleep_until(at.into()).await;
            let from = &customers[i % customers.len()];
            let subject = format!("Bench printer jams lat-{i}{suffix}");
            let raw = format!(
                "From: {from}\r\nTo: {support}\r\nSubject: {subject}\r\nMessage-ID: <{i}{suffix}@customer.test>\r\n\
                 Date: {}\r\nContent-Type: text/plain\r\n\r\nThe printer jams again.\r\n",
                chrono::Utc::now().to_rfc2822()
            );
            let envelope = Envelope::new(Some(from.parse()?), vec![support.parse()?])?;
            let (mailer, sent) = (mailer.clone(), Arc::clone(&sent));
            tokio::spawn(async move {
                if mailer.send_raw(&envelope, raw.as_bytes()).await.is_ok()
                    && let Ok(mut s) = sent.lock()
                {
                    s.insert(i, Instant::now());
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for reader in readers {
            tokio::time::timeout_at(deadline.into(), reader)
                .await
                .context("not every answer arrived within 120 s")???;
        }
        if round == "m" {
            let sent = sent.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let arrived = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let mut v: Vec<f64> = sent
                .iter()
                .filter_map(|(i, at)| Some(arrived.get(i)?.duration_since(*at).as_secs_f64()))
                .collect();
            v.sort_by(f64::total_cmp);
            if v.len() != args.mails {
                bail!("only {} of {} answers were timed", v.len(), args.mails);
            }
            return Ok(v);
        }
    }
    bail!("no measured round")
}

fn route(stack_dir: &Path, domain: &str, nexthop: Option<&str>) -> anyhow::Result<()> {
    let mut cmd = std::process::Command::new("scripts/mailstack");
    cmd.arg("route").arg(stack_dir).arg(domain).args(nexthop);
    let out = cmd.output().context("cannot run scripts/mailstack")?;
    if !out.status.success() {
        bail!("mailstack route: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn write_config(stack: &Stack, support: &str, port: u16, work: &Path) -> anyhow::Result<PathBuf> {
    let text = format!(
        "[support]\naddress = \"{support}\"\nname = \"Bench Support\"\n\
         public_url = \"http://127.0.0.1:8025\"\n\n[imap]\nenabled = false\n\n\
         [lmtp]\nlisten = \"127.0.0.1:{port}\"\n\n[smtp]\nhost = \"{host}\"\nport = {smtp}\n\
         tls = \"none\"\n\n[database]\npath = \"{db}\"\n\n[web]\nlisten = \"127.0.0.1:0\"\n\n\
         [limits]\nauto_replies_per_hour = 100000\n",
        host = stack.host,
        smtp = stack.smtp_port,
        db = work.join("postdesk.db").display(),
    );
    let path = work.join("postdesk.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The zero-work floor: takes each mail over LMTP (the crate's own pure
/// protocol), answers 250 and submits "Re: SUBJECT" to its sender at once.
async fn echo_server(listener: tokio::net::TcpListener, mailer: Mailer) {
    while let Ok((stream, _)) = listener.accept().await {
        let mailer = mailer.clone();
        tokio::spawn(async move {
            let _ = echo_session(stream, mailer).await;
        });
    }
}

async fn echo_session(stream: tokio::net::TcpStream, mailer: Mailer) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut protocol = Protocol::new("echo.bench.test", 1 << 26);
    write
        .write_all(format!("{}\r\n", protocol.greeting()).as_bytes())
        .await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        match protocol.command(&line, |_| true) {
            Step::Reply(text) => write.write_all(format!("{text}\r\n").as_bytes()).await?,
            Step::Close(text) => {
                return Ok(write.write_all(format!("{text}\r\n").as_bytes()).await?);
            }
            Step::Data => {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut data = DataReader::new(1 << 26);
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if data.push(&line) == DataStep::End {
                        break;
                    }
                }
                let mail = data.finish().unwrap_or_default();
                for _ in protocol.end_data() {
                    write.write_all(b"250 2.0.0 Ok\r\n").await?;
                }
                tokio::spawn(echo_reply(mailer.clone(), mail));
            }
        }
    }
}

async fn echo_reply(mailer: Mailer, mail: Vec<u8>) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(&mail);
    let header = |name: &str| {
        text.lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(name).map(str::trim).map(str::to_string))
            .unwrap_or_default()
    };
    let (from, to, subject) = (header("From:"), header("To:"), header("Subject:"));
    let raw = format!(
        "From: {to}\r\nTo: {from}\r\nSubject: Re: {subject}\r\nAuto-Submitted: auto-replied\r\n\r\nEcho.\r\n"
    );
    let envelope = Envelope::new(Some(to.parse()?), vec![from.parse()?])?;
    mailer.send_raw(&envelope, raw.as_bytes()).await?;
    Ok(())
}
