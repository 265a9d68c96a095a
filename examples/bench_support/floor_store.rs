//! The durable-write floor's store (issue 16): the least any durable
//! ticketing store must write for a mail (the raw bytes, one message row
//! with its Message-ID under a UNIQUE index, since nothing may double, one
//! outbox row: a confirmation is due) and, per transaction, the mailbox
//! checkpoint; with the daemon's SQLite settings (WAL, `synchronous =
//! FULL`, a 2 MiB page cache) and WAL checkpoints on a second thread after
//! commits, as the daemon's, but sooner (20 ms after a commit, not 250 ms)
//! and restarted by that thread past 64 MB (the daemon's writer restarts
//! its WAL past 16 MB). It parses nothing beyond a header scan for the Message-ID and
//! From, decides nothing, renders nothing. `bench_floor` times it on the
//! ingest benchmark's mails; `bench_scale` fills one beside postdesk's
//! database and times it at each level, so the floor's own growth is known.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, params};

/// A floor database and its checkpoint thread.
pub struct FloorStore {
    conn: Connection,
    checkpointer: Checkpointer,
    uid: u32,
}

impl FloorStore {
    /// A new, empty floor database at `path` (an old one is removed first,
    /// with its WAL).
    pub fn create(path: &Path) -> anyhow::Result<FloorStore> {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let _ = std::fs::remove_file(std::path::PathBuf::from(name));
        }
        let conn = open(path)?;
        conn.execute_batch(
            "CREATE TABLE raw_mails (id INTEGER PRIMARY KEY, bytes BLOB NOT NULL);
             CREATE TABLE messages (id INTEGER PRIMARY KEY, ticket INTEGER NOT NULL,
               raw_mail_id INTEGER NOT NULL, message_id TEXT NOT NULL UNIQUE,
               from_address TEXT NOT NULL);
             CREATE TABLE outbox (id INTEGER PRIMARY KEY, ticket INTEGER NOT NULL,
               recipient TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL, raw BLOB);
             CREATE TABLE checkpoint (mailbox TEXT PRIMARY KEY, last_uid INTEGER NOT NULL);",
        )?;
        FloorStore::on(conn, path, 0)
    }

    /// The floor database at `path` opened afresh (an empty page cache).
    pub fn reopen(self, path: &Path) -> anyhow::Result<FloorStore> {
        let uid = self.uid;
        drop(self);
        FloorStore::on(open(path)?, path, uid)
    }

    fn on(conn: Connection, path: &Path, uid: u32) -> anyhow::Result<FloorStore> {
        // As the daemon: checkpoints on their own thread, not in commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(path)?;
        Ok(FloorStore {
            conn,
            checkpointer,
            uid,
        })
    }

    /// One transaction: each mail's raw bytes, message row and outbox row
    /// (with `outbox_bytes` of filler as its rendered mail when not 0),
    /// then the checkpoint.
    pub fn write_batch(&mut self, batch: &[&[u8]], outbox_bytes: usize) -> anyhow::Result<()> {
        let tx = (self.conn).transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for raw in batch {
            self.uid += 1;
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
            let rendered: Option<Vec<u8>> = (outbox_bytes > 0)
                .then(|| raw.iter().copied().cycle().take(outbox_bytes).collect());
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
        .execute([self.uid])?;
        tx.commit()?;
        self.checkpointer.committed();
        Ok(())
    }
}

fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -2048)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    Ok(conn)
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
    fn start(path: &Path) -> anyhow::Result<Checkpointer> {
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
