//! The WAL checkpointer: copies committed pages from the write-ahead log
//! into the database file on its own thread and connection, so the writer
//! never does it inside a commit. SQLite's automatic checkpoint runs in the
//! committing connection, and during a backlog it was half of the writer's
//! commit time; here it runs beside the next batch on the second core.
//! It owns nothing but that thread; it must not write rows. Durability is
//! unchanged: a commit is on disk (in the synced WAL) before it returns,
//! checkpointed or not.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;

/// How long after a commit the checkpoint runs: commits in a burst share
/// one. Each round ends in an fsync of the database file, which competes
/// with the writer's own fsync at every commit: at 20 ms, a 10,000-mail
/// ingest ran ~150 rounds (~21 ms of fsync each) beside its 200 commits.
const COALESCE: Duration = Duration::from_millis(250);
/// The writer starts the WAL over from its beginning only when a checkpoint
/// has copied all of it; during a backlog a PASSIVE round never finds it
/// so (the writer appends while it copies), and the WAL grew to 500 MB in
/// a 10,000-mail ingest, every frame written to a new page of the file
/// (which the kernel zeroes first: ~5% of ingest's CPU). Past this many
/// frames (4 KB pages: 16 MB) the writer itself, between two transactions,
/// runs a RESTART ([`Checkpointer::restart_if_wanted`]): it copies what the
/// PASSIVE rounds have not, and the WAL starts over on pages the file
/// already has. (This thread asking for the write lock lost every time to
/// a busy writer.)
const RESTART_FRAMES: i64 = 4_096;
/// The checkpoint connection waits this long for a lock, not the 5 s of the
/// others: it must never hold a writer back for long, and it tries again
/// after the next commit.
const BUSY: Duration = Duration::from_millis(200);
/// Failed rounds in a row before it is worth a warning.
const FAILURES_TO_WARN: u32 = 20;

#[derive(Default)]
struct Signal {
    committed: bool,
    stopping: bool,
}

pub(super) struct Checkpointer {
    signal: Arc<(Mutex<Signal>, Condvar)>,
    /// Set by the thread when the WAL is past [`RESTART_FRAMES`].
    restart_wanted: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to `path`. The caller
    /// turns off the automatic checkpoint of its writer connection.
    pub(super) fn start(path: &Path) -> anyhow::Result<Checkpointer> {
        let conn = Connection::open(path).context("cannot open the checkpoint connection")?;
        super::configure(&conn)?;
        conn.busy_timeout(BUSY)?;
        let signal = Arc::new((Mutex::new(Signal::default()), Condvar::new()));
        let restart_wanted = Arc::new(AtomicBool::new(false));
        let theirs = (Arc::clone(&signal), Arc::clone(&restart_wanted));
        let thread = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || run(&conn, &theirs.0, &theirs.1))
            .context("cannot start the checkpoint thread")?;
        Ok(Checkpointer {
            signal,
            restart_wanted,
            thread: Some(thread),
        })
    }

    /// Run by the writer on its own connection between transactions: when
    /// the WAL has grown past [`RESTART_FRAMES`], a RESTART checkpoint.
    /// It never waits: while this thread's round or a reader holds the
    /// WAL it gives up at once (waiting up to 200 ms for a running round,
    /// after every transaction, stalled the writer).
    /// One attempt per round: even put off, a RESTART copies what it can
    /// and syncs the file, which must not follow every transaction.
    pub(super) fn restart_if_wanted(&self, writer: &Connection) {
        if !self.restart_wanted.swap(false, Ordering::Relaxed) {
            return;
        }
        let started = std::time::Instant::now();
        let restarted = writer.busy_timeout(Duration::ZERO).and_then(|()| {
            writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0))
        });
        if let Err(err) = writer.busy_timeout(super::BUSY_TIMEOUT) {
            tracing::warn!("cannot set the writer's busy timeout back: {err:#}");
        }
        match restarted {
            // On the writer's path, between two batches: the debug log
            // says how long it held them up.
            Ok(0) => tracing::debug!(
                "WAL restarted in {:.1} ms",
                super::ingest::millis(started.elapsed())
            ),
            Ok(_) => tracing::debug!("WAL restart put off: readers were busy"),
            Err(err) => tracing::debug!("WAL restart failed: {err:#}"),
        }
    }

    /// Tells the thread a write transaction ended.
    pub(super) fn committed(&self) {
        let (lock, wake) = &*self.signal;
        lock.lock().unwrap_or_else(|p| p.into_inner()).committed = true;
        wake.notify_one();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.signal;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stopping = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, signal: &(Mutex<Signal>, Condvar), restart_wanted: &AtomicBool) {
    let (lock, wake) = signal;
    let mut failures = 0u32;
    let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        while !state.committed && !state.stopping {
            state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        // Let a burst of commits pass, then checkpoint them together.
        state = wake
            .wait_timeout_while(state, COALESCE, |s| !s.stopping)
            .unwrap_or_else(|p| p.into_inner())
            .0;
        if state.stopping {
            return;
        }
        state.committed = false;
        drop(state);
        match checkpoint(conn) {
            Ok(frames) => {
                failures = 0;
                if frames > RESTART_FRAMES {
                    restart_wanted.store(true, Ordering::Relaxed);
                }
            }
            Err(err) => {
                // Usually a reader or the writer held a lock: the next
                // commit brings another round.
                failures += 1;
                if failures.is_multiple_of(FAILURES_TO_WARN) {
                    tracing::warn!(
                        "{failures} WAL checkpoints in a row failed; the WAL file grows: {err:#}"
                    );
                } else {
                    tracing::debug!("WAL checkpoint skipped: {err:#}");
                }
            }
        }
        state = lock.lock().unwrap_or_else(|p| p.into_inner());
    }
}

/// One PASSIVE round; returns how many frames the WAL holds.
fn checkpoint(conn: &Connection) -> anyhow::Result<i64> {
    let (busy, log_frames): (i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if busy != 0 {
        anyhow::bail!("the database was busy");
    }
    Ok(log_frames)
}
