//! Latency benchmark (issues #2 and #6): customers submit new mails over
//! SMTP to the stack's Postfix at a steady mean rate (Poisson arrivals, as
//! independent customers write; `--even` spaces them exactly, which can
//! phase-lock with Dovecot's fixed 0.5 s IDLE delay); the release daemon (a
//! child process, IMAP IDLE on the support mailbox, SMTP through the same
//! Postfix) answers each with a confirmation; each customer's INBOX is read
//! with a tight poll (`UID FETCH next:*` every 10 ms, not IDLE, whose
//! Dovecot notify delay of 0.5 s would be measured too). Prints p50, p90,
//! p99 and max of submit (the server's 250 after DATA) → confirmation in
//! the customer's INBOX.
//!
//! `target/release/examples/bench_latency --postdesk target/release/postdesk --work DIR
//!  [--mails 200 --rate 2]` with the stack's environment (`scripts/bench latency`).

#[path = "bench_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use support::inbox::{Arrivals, watch_inboxes};
use support::mails::{Generator, Mix};
use support::{Daemon, DaemonConfig, Stack, figure, percentile};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    postdesk: PathBuf,
    #[arg(long)]
    work: PathBuf,
    #[arg(long, default_value_t = 200)]
    mails: usize,
    /// Mails submitted per second, on average.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Space the mails exactly 1/rate apart instead of at random.
    #[arg(long)]
    even: bool,
    /// The support mailbox (emptied first).
    #[arg(long, default_value = "t01@example.test")]
    support: String,
    /// Senders are customer1 … customerN of the mail stack.
    #[arg(long, default_value_t = 5)]
    customers: u32,
    /// How often each customer's INBOX is polled.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    #[arg(long, default_value_t = 2)]
    seed: u64,
    /// Name of the figure (e.g. "issue #2").
    #[arg(long, default_value = "latency")]
    label: String,
}

/// When each mail's SMTP submission began and when the server accepted it
/// (250 after DATA); when its confirmation was seen is in [`Arrivals`].
#[derive(Default)]
struct Times {
    submitted: BTreeMap<usize, (Instant, Instant)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::from_env()?;
    let work = support::work_dir(&args.work)?;
    let run = format!("{:x}", std::process::id());
    let customers: Vec<String> = (1..=args.customers)
        .map(|n| format!("customer{n}@example.test"))
        .collect();
    support::clear_inbox(&stack, &args.support).await?;
    for user in customers
        .iter()
        .map(String::as_str)
        .chain(["agent@example.test"])
    {
        support::clear_inbox(&stack, user).await?;
    }

    let db = work.join("postdesk.db");
    let config = work.join("postdesk.toml");
    support::write_config(
        &stack,
        &DaemonConfig {
            // 200 mails from 5 customers within minutes: above the default
            // cap of 10 automatic replies per address and hour.
            auto_replies_per_hour: 100_000,
            ..DaemonConfig::usual(&args.support, stack.smtp_port, &db)
        },
        &config,
    )?;
    let mut daemon = Daemon::spawn(&args.postdesk, &config, &work.join("daemon.log"))?;
    let times = Arc::new(Mutex::new(Times::default()));
    let seen = Arrivals::default();
    let mut generator = Generator::new(
        args.seed,
        Mix {
            reply_share: 0.0,
            attachment_share: 0.0,
            ..Mix::realistic(args.customers)
        },
        &args.support,
        "example.test",
        &format!("lat{run}"),
    )
    .with_customers("customer", 1);
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(stack.host.clone())
        .port(stack.smtp_port)
        .build();

    // Warm-up, not counted: one mail per customer, answered end to end.
    let warm_up = watch_inboxes(
        &stack,
        &customers,
        &format!("-w{run}"),
        args.customers as usize,
        &seen,
        args.poll_ms,
    )
    .await?;
    for i in 0..args.customers as usize {
        let mail = generator.next_tagged(chrono::Utc::now(), &format!(" warm-{i}-w{run}"));
        submit(&mailer, &mail.from, &args.support, mail.raw).await?;
    }
    wait_all(warm_up, &mut daemon, Duration::from_secs(60))
        .await
        .context("warm-up")?;
    seen.lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clear();

    let suffix = format!("-m{run}");
    let readers =
        watch_inboxes(&stack, &customers, &suffix, args.mails, &seen, args.poll_ms).await?;
    let started = Instant::now();
    let offsets = arrivals(&args);
    let mut sends = Vec::new();
    for (i, offset) in offsets.iter().enumerate() {
        tokio::time::sleep_until((started + *offset).into()).await;
        let mail = generator.next_tagged(chrono::Utc::now(), &format!(" lat-{i}{suffix}"));
        let (mailer, times, support) = (mailer.clone(), Arc::clone(&times), args.support.clone());
        sends.push(tokio::spawn(async move {
            let began = Instant::now();
            let result = submit(&mailer, &mail.from, &support, mail.raw).await;
            if let Ok(mut t) = times.lock() {
                t.submitted.insert(i, (began, Instant::now()));
            }
            result
        }));
    }
    for send in sends {
        send.await??;
    }
    let outcome = wait_all(readers, &mut daemon, Duration::from_secs(120)).await;
    let rss = daemon.rss()?;
    daemon.stop()?;
    outcome?;
    report(&args, &times, &seen, rss)
}

/// When each mail is submitted, from the start: evenly spaced, or a
/// Poisson process (exponential gaps, seeded) of the same mean rate.
fn arrivals(args: &Args) -> Vec<Duration> {
    let mut rng = support::mails::Rng::new(args.seed ^ 0xA5A5);
    let mut at = 0.0f64;
    (0..args.mails)
        .map(|_| {
            let offset = Duration::from_secs_f64(at);
            let uniform = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            at += if args.even {
                1.0 / args.rate
            } else {
                -(1.0 - uniform).ln() / args.rate
            };
            offset
        })
        .collect()
}

fn report(
    args: &Args,
    times: &Mutex<Times>,
    seen: &Arrivals,
    rss: support::Rss,
) -> anyhow::Result<()> {
    let t = times.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let arrived = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    // From the server's acceptance of the submission (the clock a sender
    // sees: "sent"), and for reference from the first byte of the session.
    let since = |from_start: bool| -> Vec<f64> {
        let mut v: Vec<f64> = t
            .submitted
            .iter()
            .filter_map(|(i, (began, accepted))| {
                let from = if from_start { began } else { accepted };
                arrived
                    .get(i)
                    .map(|got| got.duration_since(*from).as_secs_f64())
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let latencies = since(false);
    let from_start = since(true);
    if latencies.len() != args.mails {
        bail!(
            "only {} of {} confirmations arrived",
            latencies.len(),
            args.mails
        );
    }
    let submits: Vec<f64> = t
        .submitted
        .values()
        .map(|(began, accepted)| accepted.duration_since(*began).as_secs_f64())
        .collect();
    let mean_submit = submits.iter().sum::<f64>() / submits.len().max(1) as f64;
    println!(
        "{} mails at {}/s from {} customers; the SMTP submission itself took {:.1} ms on \
         average (p50 {:.3} s counted from its first byte); from acceptance: min {:.3} s, \
         p90 {:.3} s, max {:.3} s; daemon RSS {:.1} MB (peak {:.1} MB)",
        args.mails,
        args.rate,
        args.customers,
        mean_submit * 1000.0,
        percentile(&from_start, 50.0),
        latencies[0],
        percentile(&latencies, 90.0),
        latencies[latencies.len() - 1],
        rss.rss_mib(),
        rss.hwm_mib()
    );
    let what = format!(
        "{}: SMTP submit (accepted) -> confirmation in the customer's INBOX, {} mails at {}/s{}",
        args.label,
        args.mails,
        args.rate,
        if args.even { " (even)" } else { " (Poisson)" }
    );
    figure(
        &format!("{what}, p50"),
        &format!("{:.3} s", percentile(&latencies, 50.0)),
        "< 1 s",
    );
    if args.mails >= 100 {
        figure(
            &format!("{what}, p99"),
            &format!("{:.3} s", percentile(&latencies, 99.0)),
            "reference",
        );
    }
    Ok(())
}

async fn submit(
    mailer: &AsyncSmtpTransport<Tokio1Executor>,
    from: &str,
    to: &str,
    raw: Vec<u8>,
) -> anyhow::Result<()> {
    let envelope = Envelope::new(Some(from.parse()?), vec![to.parse()?])?;
    mailer
        .send_raw(&envelope, &raw)
        .await
        .context("the stack refused a customer's mail")?;
    Ok(())
}

async fn wait_all(
    readers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    daemon: &mut Daemon,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    for reader in readers {
        loop {
            daemon.check_alive()?;
            if reader.is_finished() {
                reader.await??;
                break;
            }
            if Instant::now() > deadline {
                reader.abort();
                bail!(
                    "not every confirmation arrived within {} s",
                    limit.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
