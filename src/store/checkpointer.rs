//! The WAL checkpointer: copies committed pages from the write-ahead log
//! into the database file on its own thread and connection, so the writer
//! never does it inside a commit. SQLite's automatic checkpoint runs in the
//! committing connection, and during a backlog it was half of the writer's
//! commit time; here it runs beside the next batch on the second core.
//! It owns nothing but that thread; it must not write rows. Durability is
//! unchanged: a commit is on disk (in the synced WAL) before it returns,
//! checkpointed or not.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;

/// How long after a commit the checkpoint runs: commits in a burst share one.
const COALESCE: Duration = Duration::from_millis(20);
/// The writer starts the WAL over from its beginning only when a checkpoint
/// has copied all of it; during a backlog it never finds it so, and the WAL
/// grows. Past this many frames (4 KB pages: 64 MB), once a PASSIVE round
/// has copied everything, a RESTART resets it.
const RESTART_FRAMES: i64 = 16_384;
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
        let theirs = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || run(&conn, &theirs))
            .context("cannot start the checkpoint thread")?;
        Ok(Checkpointer {
            signal,
            thread: Some(thread),
        })
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

fn run(conn: &Connection, signal: &(Mutex<Signal>, Condvar)) {
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
            Ok(()) => failures = 0,
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

fn checkpoint(conn: &Connection) -> anyhow::Result<()> {
    let (busy, log_frames, copied): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        anyhow::bail!("the database was busy");
    }
    if log_frames > RESTART_FRAMES && copied == log_frames {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}
