//! The durable-write floor of the ingest benchmark (issue 16 §1): a
//! minimal rusqlite program that writes, for each mail of the benchmark's
//! own set, the least any durable ticketing store must: the raw bytes, one
//! message row (ticket, Message-ID under a UNIQUE index, since nothing may
//! double), one outbox row (recipient, kind, status: a confirmation is
//! due) and, per batch, the mailbox checkpoint. Batches and SQLite
//! settings are the daemon's (src/store/mod.rs and src/imap/batch.rs): 50
//! mails or 1 MB a transaction, WAL, `synchronous = FULL`, a 2 MB page
//! cache, and WAL checkpoints on a second thread after commits. It parses
//! nothing beyond a header scan for the Message-ID and From, decides
//! nothing, renders nothing.
//!
//! `bench_ingest` runs it on the mails it appended (`--mails-file`, written
//! by `bench_ingest`: each mail as a u32 little-endian length, then its
//! bytes) and prints it beside the daemon; it prints
//! `FLOOR\tSECONDS\tBYTES_WRITTEN` on its last line, and its peak RSS.

#[path = "bench_support/mails_file.rs"]
mod mails_file;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use mails_file::read_mails;
use rusqlite::{Connection, params};

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
    for suffix in ["", "-wal", "-shm"] {
        let mut name = args.db.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
    let mut conn = open(&args.db)?;
    conn.execute_batch(
        "CREATE TABLE raw_mails (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL);
         CREATE TABLE messages (id INTEGER PRIMARY KEY, ticket INTEGER NOT NULL,
           raw_mail_id INTEGER NOT NULL, message_id TEXT NOT NULL UNIQUE,
           from_address TEXT NOT NULL);
         CREATE TABLE outbox (id INTEGER PRIMARY KEY, ticket INTEGER NOT NULL,
           recipient TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, raw BLOB);
         CREATE TABLE checkpoint (mailbox TEXT PRIMARY KEY, last_uid INTEGER NOT NULL);",
    )?;
    // As the daemon: checkpoints on their own thread, not in commits.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    let checkpointer = Checkpointer::start(&args.db)?;

    let started = Instant::now();
    let mut uid = 0u32;
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
        write_batch(&mut conn, batch, &mut uid, args.outbox_bytes)?;
        checkpointer.committed();
        rest = next;
    }
    let secs = started.elapsed().as_secs_f64();
    drop(checkpointer);
    drop(conn);
    let written = std::fs::metadata(&args.db)?.len();
    println!(
        "floor: {} mails in {secs:.2} s ({:.0} mails/s), database {:.0} MB, peak RSS {:.1} MB (the whole set read first)",
        mails.len(),
        mails.len() as f64 / secs,
        written as f64 / 1e6,
        peak_rss_mib()
    );
    println!("FLOOR\t{secs}\t{written}");
    Ok(())
}

fn open(path: &std::path::Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -2048)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    Ok(conn)
}

/// One transaction: each mail's raw bytes, message row and outbox row,
/// then the checkpoint.
fn write_batch(
    conn: &mut Connection,
    batch: &[&[u8]],
    uid: &mut u32,
    outbox_bytes: usize,
) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for raw in batch {
        *uid += 1;
        let (message_id, from) = header_fields(raw);
        tx.prepare_cached("INSERT INTO raw_mails (bytes) VALUES (?1)")?
            .execute([*raw])?;
        let raw_id = tx.last_insert_rowid();
        tx.prepare_cached(
            "INSERT INTO messages (ticket, raw_mail_id, message_id, from_address)
             VALUES (?1, ?1, ?2, ?3)",
        )?
        .execute(params![raw_id, message_id, from])?;
        // Text-like filler when asked (the start of the mail, repeated).
        let rendered: Option<Vec<u8>> =
            (outbox_bytes > 0).then(|| raw.iter().copied().cycle().take(outbox_bytes).collect());
        tx.prepare_cached(
            "INSERT INTO outbox (ticket, recipient, kind, status, raw)
             VALUES (?1, ?2, 'confirmation', 'pending', ?3)",
        )?
        .execute(params![raw_id, from, rendered])?;
    }
    tx.prepare_cached(
        "INSERT INTO checkpoint (mailbox, last_uid) VALUES ('INBOX', ?1)
         ON CONFLICT(mailbox) DO UPDATE SET last_uid = excluded.last_uid",
    )?
    .execute([*uid])?;
    tx.commit()?;
    Ok(())
}

/// The Message-ID and From header values, by a scan of the header lines
/// (no unfolding, no decoding: the floor does not parse).
fn header_fields(raw: &[u8]) -> (String, String) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let mut message_id = None;
    let mut from = None;
    for line in raw[..end].split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let lower = line.to_ascii_lowercase();
        if message_id.is_none() && lower.starts_with("message-id:") {
            message_id = Some(line[11..].trim().to_string());
        } else if from.is_none() && lower.starts_with("from:") {
            from = Some(line[5..].trim().to_string());
        }
    }
    (
        message_id.unwrap_or_else(|| format!("no-id-{}", raw.len())),
        from.unwrap_or_default(),
    )
}

/// The daemon's checkpointer, reduced: a PASSIVE checkpoint on its own
/// connection shortly after commits, a RESTART once the WAL is past 64 MB
/// and fully copied.
struct Checkpointer {
    signal: Arc<(Mutex<bool>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &std::path::Path) -> anyhow::Result<Checkpointer> {
        let conn = open(path)?;
        conn.busy_timeout(Duration::from_millis(200))?;
        let signal = Arc::new((Mutex::new(false), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&signal), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let (lock, wake) = &*s;
            loop {
                let mut committed = lock.lock().unwrap_or_else(|p| p.into_inner());
                while !*committed && !st.load(Ordering::SeqCst) {
                    committed = wake.wait(committed).unwrap_or_else(|p| p.into_inner());
                }
                *committed = false;
                drop(committed);
                if st.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
                let round = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                });
                if let Ok((0, frames, copied)) = round
                    && frames > 16_384
                    && copied == frames
                {
                    let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
                }
            }
        });
        Ok(Checkpointer {
            signal,
            stop,
            thread: Some(thread),
        })
    }

    fn committed(&self) {
        let (lock, wake) = &*self.signal;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_one();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Under the lock, so the thread cannot miss it between its check
        // and its wait.
        let guard = self.signal.0.lock().unwrap_or_else(|p| p.into_inner());
        self.stop.store(true, Ordering::SeqCst);
        self.signal.1.notify_one();
        drop(guard);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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
