//! The durable-write floor of the ingest benchmark (issue 16 §1): a
//! minimal rusqlite program that writes, for each mail of the benchmark's
//! own set, the least any durable ticketing store must: the raw bytes, one
//! message row (ticket, Message-ID under a UNIQUE index, since nothing may
//! double), one outbox row (recipient, kind, status: a confirmation is
//! due) and, per batch, the mailbox checkpoint. Batches and SQLite
//! settings are the daemon's (src/store/mod.rs and src/imap/batch.rs): 50
//! mails or 1 MB a transaction, WAL, `synchronous = FULL`, a 2 MB page
//! cache, and WAL checkpoints on a second thread after commits. It parses
//! nothing beyond a header scan (Message-ID, From, Subject, In-Reply-To),
//! decides nothing, renders nothing. `--shape ticketing` is the ticketing
//! floor (`bench_support/floor_store.rs`: tickets with their lists,
//! threading, search on top), the least a helpdesk's store keeps.
//!
//! `bench_ingest` runs it on the mails it appended (`--mails-file`, written
//! by `bench_ingest`: each mail as a u32 little-endian length, then its
//! bytes) and prints it beside the daemon; it prints
//! `FLOOR\tSECONDS\tBYTES_WRITTEN\tTICKETS` on its last line (TICKETS is
//! -1 for the plain floor, which keeps none), and its peak RSS.

// Its `reopen` is `bench_scale`'s.
#[allow(dead_code)]
#[path = "bench_support/floor_store.rs"]
mod floor_store;
#[path = "bench_support/mails_file.rs"]
mod mails_file;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use floor_store::{FloorStore, Shape};
use mails_file::read_mails;

#[derive(Parser)]
struct Args {
    /// The mails, as `bench_ingest` wrote them.
    #[arg(long)]
    mails_file: PathBuf,
    /// The database to create (removed first, with its WAL).
    #[arg(long)]
    db: PathBuf,
    /// Bytes of rendered mail to keep in each outbox row (0: none, the
    /// floor). For weighing what storing outgoing mail whole costs.
    #[arg(long, default_value_t = 0)]
    outbox_bytes: usize,
    /// What the floor keeps: `plain` (the floor) or `ticketing`.
    #[arg(long, value_enum, default_value = "plain")]
    shape: Shape,
}

/// The daemon's batch bounds (`FETCH_BATCH`, `BATCH_BYTES`).
const BATCH_MAILS: usize = 50;
const BATCH_BYTES: usize = 1024 * 1024;

fn main() -> anyhow::Result<()> {
    // glibc's default allocator settings, not the daemon's (its mmap
    // threshold trades CPU for memory): a limit is measured at its best.
    let args = Args::parse();
    let (data, ranges) = read_mails(&args.mails_file)?;
    let mails: Vec<&[u8]> = ranges.into_iter().map(|r| &data[r]).collect();
    let mut store = FloorStore::create(&args.db, args.shape)?;

    let started = Instant::now();
    let mut rest = &mails[..];
    while !rest.is_empty() {
        let mut take = 0;
        let mut bytes = 0;
        while take < rest.len()
            && take < BATCH_MAILS
            && (take == 0 || bytes + rest[take].len() <= BATCH_BYTES)
        {
            bytes += rest[take].len();
            take += 1;
        }
        let (batch, next) = rest.split_at(take);
        store.write_batch(batch, args.outbox_bytes)?;
        rest = next;
    }
    let secs = started.elapsed().as_secs_f64();
    let tickets = store.tickets()?;
    drop(store);
    if let Some(tickets) = tickets {
        println!("ticketing floor: {tickets} tickets");
    }
    let written = std::fs::metadata(&args.db)?.len();
    println!(
        "{}: {} mails in {secs:.2} s ({:.0} mails/s), database {:.0} MB, peak RSS {:.1} MB (the whole set read first)",
        args.shape.name(),
        mails.len(),
        mails.len() as f64 / secs,
        written as f64 / 1e6,
        peak_rss_mib()
    );
    println!("FLOOR\t{secs}\t{written}\t{}", tickets.unwrap_or(-1));
    Ok(())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}
