//! PostgreSQL benchmark (issue 15 §4), run by `scripts/bench pg` (which
//! starts a private mail stack and a private PostgreSQL cluster, builds,
//! and prints the table):
//!
//! - `ingest`: the issue-6 mail set read by 1, 2 and 3 release daemons on
//!   one PostgreSQL database (one support mailbox each, the mails split
//!   across them by customer) beside one daemon on SQLite, same mails:
//!   mails/s, peak RSS and CPU per daemon;
//! - `page`: `/t/TOKEN` and `/r/TOKEN` at N tickets (the page benchmark's desk, moved into
//!   PostgreSQL by `postdesk migrate-db`, whose time it prints) served by
//!   two daemons on PostgreSQL beside one on SQLite, with wrk.
//!
//! Submit → confirmation latency on PostgreSQL is `bench_latency` with
//! `POSTDESK__DATABASE__URL` set for its daemon (see `scripts/bench`).
//! By hand, with `eval "$(scripts/mailstack env DIR)"` and
//! `eval "$(scripts/pgcluster env DIR)"`:
//! `target/release/examples/bench_pg --postdesk target/release/postdesk ingest --work DIR`

#[path = "bench_support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "page_bench_support/fill.rs"]
mod fill;
#[allow(dead_code)]
#[path = "page_bench_support/wrk.rs"]
mod wrk;

#[path = "bench_pg_support/mod.rs"]
mod pg;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Ingest, /t/TOKEN and /r/TOKEN on PostgreSQL (several daemons) beside SQLite")]
struct Args {
    /// The release `postdesk` binary.
    #[arg(long)]
    postdesk: PathBuf,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// The issue-6 mail set with 1, 2, 3 daemons on PostgreSQL and 1 on SQLite.
    Ingest(pg::ingest::IngestArgs),
    /// /t/TOKEN and /r/TOKEN served by two daemons on PostgreSQL and one on SQLite.
    Page(pg::page::PageArgs),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The PostgreSQL client here is the blocking one: the runtime only
    // serves the async parts (IMAP appends, the SMTP sink, wrk).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match &args.what {
        What::Ingest(ingest) => pg::ingest::run(&runtime, &args.postdesk, ingest),
        What::Page(page) => pg::page::run(&runtime, &args.postdesk, page),
    }
}
