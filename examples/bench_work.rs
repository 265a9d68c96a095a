//! The pure-work limit of the ingest benchmark (issue 16 §1): postdesk's
//! own pipeline on the benchmark's mails with no database at all. The
//! `Pipeline` is built as the daemon builds it, from the benchmark's config
//! (`--config`, the one `bench_ingest` writes; templates loaded, a random
//! installation secret). One thread prepares each mail (parse, classify,
//! authenticate an agent, strip) into a bounded channel, as the daemon's
//! preparing thread feeds its writer; a second thread decides each
//! (thread, apply, compose) against an in-memory desk that learns from
//! every outcome what the store would have written, so that replies thread
//! onto their tickets as in the daemon. It writes and sends nothing.
//!
//! `bench_ingest` runs it on the mails it appended (`--mails-file`, each
//! mail as a u32 little-endian length, then its bytes). It prints the wall
//! time, mails/s, the CPU per mail (the process's, and each stage's
//! thread's), the counts (checked against the daemon's when `--expect`
//! gives them: a mismatch means the desk differs from the store), and
//! `WORK\tSECONDS\tCPU_SECONDS\tPREPARING_CPU\tDECIDING_CPU` on its last
//! line (CPU seconds of the preparing thread, and inside `Pipeline::decide`). `--split` also runs
//! threading and apply alone before each decide, to tell deciding from
//! composing (extra work on the deciding thread: not a run for the rate).

#[path = "bench_support/cpu.rs"]
mod cpu;
#[path = "bench_support/desk.rs"]
mod desk;
#[path = "bench_support/mails_file.rs"]
mod mails_file;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use clap::Parser;
use mails_file::read_mails;

use cpu::{process_cpu, thread_cpu};
use desk::{Counts, Desk};
use postdesk::ingest::thread::{self, Threading};
use postdesk::ingest::{Pipeline, Prepared, PreparedMail};
use postdesk::ingest::{apply, parse};
use postdesk::outbound::templates::Templates;
use postdesk::settings::Settings;
use postdesk::tokens::{link_token, random_token, sha256_hex};

#[derive(Parser)]
struct Args {
    /// The mails, as `bench_ingest` wrote them.
    #[arg(long)]
    mails_file: PathBuf,
    /// The daemon's config, as `bench_ingest` wrote it.
    #[arg(long)]
    config: PathBuf,
    /// What the daemon stored for these mails: TICKETS,CONFIRMATIONS,OUTBOX.
    #[arg(long)]
    expect: Option<String>,
    /// Also run threading and apply alone before each decide (see above).
    #[arg(long)]
    split: bool,
}

/// Prepared mails that may wait for the decider: the daemon's
/// `PREPARED_AHEAD` (src/store/budget.rs).
const PREPARED_AHEAD: usize = 4;

fn main() -> anyhow::Result<()> {
    // glibc's default allocator settings, not the daemon's (its mmap
    // threshold trades CPU for memory): a limit is measured at its best.
    let args = Args::parse();
    let (data, ranges) = read_mails(&args.mails_file)?;
    let mails: Vec<&[u8]> = ranges.into_iter().map(|r| &data[r]).collect();
    let pipeline = daemon_pipeline(&args.config)?;

    let cpu_before = process_cpu();
    let started = Instant::now();
    let run = run(&pipeline, &mails, args.split)?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = process_cpu() - cpu_before;

    let n = mails.len() as f64;
    let ms = |s: f64| s * 1000.0 / n;
    println!(
        "work: {} mails in {secs:.2} s ({:.0} mails/s), process CPU {cpu:.2} s ({:.3} ms per mail)",
        mails.len(),
        n / secs,
        ms(cpu)
    );
    println!(
        "work stages (thread CPU per mail): preparing {:.3} ms (parse, classify, authenticate, \
         strip); deciding {:.3} ms, of which Pipeline::decide {:.3} ms and the desk's \
         bookkeeping {:.3} ms",
        ms(run.preparing.cpu - run.preparing.extra()),
        ms(run.decide_thread_cpu),
        ms(run.decide_cpu),
        ms(run.decide_thread_cpu - run.decide_cpu - run.decision_cpu.unwrap_or(0.0))
    );
    if let (Some(parse), Some(sha)) = (run.preparing.parse_cpu, run.preparing.sha256_cpu) {
        println!(
            "work split (thread CPU per mail): parse alone {:.3} ms (mail-parser, decoded \
             attachments, the raw mail's sha256, which alone takes {:.3} ms); the rest of \
             prepare (classify, authenticate, strip) {:.3} ms",
            ms(parse),
            ms(sha),
            ms(run.preparing.prepare_cpu - parse)
        );
    }
    if let Some(decision) = run.decision_cpu {
        println!(
            "work split (thread CPU per mail): threading and apply alone {:.3} ms; the rest of \
             Pipeline::decide (links, signed ids, composing with templates and lettre, copies) \
             {:.3} ms",
            ms(decision),
            ms(run.decide_cpu - decision)
        );
    }
    run.counts.report(args.expect.as_deref())?;
    let preparing = run.preparing.cpu - run.preparing.extra();
    println!("WORK\t{secs}\t{cpu}\t{preparing}\t{}", run.decide_cpu);
    Ok(())
}

/// The daemon's pipeline for `config` (src/app.rs `open_store`), with a
/// secret made as the store makes a new installation's.
fn daemon_pipeline(config: &std::path::Path) -> anyhow::Result<Pipeline> {
    let settings = Settings::load(Some(config))
        .with_context(|| format!("cannot load {}", config.display()))?;
    let secret = if settings.support.secret.is_empty() {
        format!("{}{}", random_token()?, random_token()?)
    } else {
        settings.support.secret.expose().to_string()
    };
    let templates = Templates::load(&settings).context("cannot load the templates")?;
    Ok(Pipeline::with_templates(
        &settings,
        &secret,
        Arc::new(templates),
    ))
}

struct Run {
    preparing: Preparing,
    decide_thread_cpu: f64,
    /// Inside `Pipeline::decide` calls only.
    decide_cpu: f64,
    /// Threading and apply alone (`--split`).
    decision_cpu: Option<f64>,
    counts: Counts,
}

/// Prepares on one thread, decides on another, as the daemon does.
fn run(pipeline: &Pipeline, mails: &[&[u8]], split: bool) -> anyhow::Result<Run> {
    let (ready, prepared) = sync_channel::<Prepared>(PREPARED_AHEAD);
    std::thread::scope(|s| {
        let preparer = s.spawn(move || prepare_all(pipeline, mails, ready, split));
        let decider = s.spawn(move || decide_all(pipeline, mails, prepared, split));
        let decided = decider
            .join()
            .map_err(|_| anyhow!("the deciding thread panicked"))??;
        let preparing = preparer
            .join()
            .map_err(|_| anyhow!("the preparing thread panicked"))?;
        Ok(Run {
            preparing,
            ..decided
        })
    })
}

/// The preparing thread's CPU (seconds).
#[derive(Default)]
struct Preparing {
    cpu: f64,
    /// Inside `Pipeline::prepare` calls only.
    prepare_cpu: f64,
    /// Parsing alone, and the raw mail's sha256 alone (`--split`).
    parse_cpu: Option<f64>,
    sha256_cpu: Option<f64>,
}

impl Preparing {
    /// What `--split` added to the thread.
    fn extra(&self) -> f64 {
        self.parse_cpu.unwrap_or(0.0) + self.sha256_cpu.unwrap_or(0.0)
    }
}

fn prepare_all(
    pipeline: &Pipeline,
    mails: &[&[u8]],
    ready: SyncSender<Prepared>,
    split: bool,
) -> Preparing {
    let (mut prepare_cpu, mut parse_cpu, mut sha256_cpu) = (0.0, 0.0, 0.0);
    for raw in mails {
        if split {
            let t = thread_cpu();
            std::hint::black_box(parse::parse(raw).ok());
            let parsed = thread_cpu();
            std::hint::black_box(sha256_hex(raw));
            sha256_cpu += thread_cpu() - parsed;
            parse_cpu += parsed - t;
        }
        let t = thread_cpu();
        let mail = pipeline.prepare(raw);
        prepare_cpu += thread_cpu() - t;
        if ready.send(mail).is_err() {
            break; // the decider gave up
        }
    }
    Preparing {
        cpu: thread_cpu(),
        prepare_cpu,
        parse_cpu: split.then_some(parse_cpu),
        sha256_cpu: split.then_some(sha256_cpu),
    }
}

fn decide_all(
    pipeline: &Pipeline,
    mails: &[&[u8]],
    prepared: Receiver<Prepared>,
    split: bool,
) -> anyhow::Result<Run> {
    let mut desk = Desk::default();
    let (mut decide_cpu, mut decision_cpu) = (0.0, 0.0);
    for raw in mails {
        let mail = prepared
            .recv()
            .context("the preparing thread ended early")?;
        let now = Utc::now();
        if split && let Prepared::Mail(mail) = &mail {
            let t = thread_cpu();
            decision_only(pipeline, mail, &desk, now)?;
            decision_cpu += thread_cpu() - t;
        }
        let t = thread_cpu();
        let outcome = pipeline.decide(raw, mail, &desk, now)?;
        decide_cpu += thread_cpu() - t;
        desk.learn(&outcome, now);
    }
    Ok(Run {
        preparing: Preparing::default(),
        decide_thread_cpu: thread_cpu(),
        decide_cpu,
        decision_cpu: split.then_some(decision_cpu),
        counts: desk.counts,
    })
}

/// What `Pipeline::decide` does for a customer's mail before it composes:
/// threading and apply (src/ingest/respond.rs `customer_mail`).
fn decision_only(
    p: &Pipeline,
    mail: &PreparedMail,
    desk: &Desk,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let threading = thread::thread(&mail.mail, &p.signer, &p.identity.tag, &p.agents, desk)?;
    if threading == Threading::Duplicate {
        return Ok(());
    }
    let signed_for = thread::customer_tokens(&mail.mail, &p.signer);
    let token = link_token(now)?;
    let decision = apply::decide(mail, threading, desk, token, now, p.policy, &signed_for)?;
    std::hint::black_box(decision);
    Ok(())
}
