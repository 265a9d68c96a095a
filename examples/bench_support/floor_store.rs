//! The durable-write floor's store (issue 16): the least any durable
//! ticketing store must write for a mail (the raw bytes, one message row
//! with its Message-ID under a UNIQUE index, since nothing may double, one
//! outbox row: a confirmation is due) and, per transaction, the mailbox
//! checkpoint; with the daemon's SQLite settings (WAL, `synchronous =
//! FULL`, a 2 MiB page cache) and WAL checkpoints on a second thread after
//! commits, as the daemon's, but sooner (20 ms after a commit, not 250 ms)
//! and restarted by that thread past 64 MB (the daemon's writer restarts
//! its WAL past 16 MB). It parses nothing beyond a header scan (Message-ID,
//! From, Subject, In-Reply-To), decides nothing, renders nothing.
//! `bench_floor` times it on the ingest benchmark's mails; `bench_scale`
//! fills one of each shape beside each level's postdesk database and times
//! them on the same probes, so the floors' own growth is known.
//!
//! A second shape, [`Shape::Ticketing`], is the least a store must keep to
//! read its mail back as a helpdesk does (issue 16, the true limit): the
//! above, and a ticket row per conversation with the customer's list and
//! the agents' status list indexed by last activity (a mail on a ticket
//! moves its entries, as a list by activity must), the messages indexed by
//! ticket, a reply threaded to its ticket by its In-Reply-To (one lookup of
//! the Message-ID index), and the mail's first text part in a full-text
//! index (FTS5, postdesk's tokenizer), found by a scan, not decoded.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

/// What a floor store keeps for each mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// The floor: the raw bytes, a message row under a unique
    /// Message-ID, an outbox row.
    Plain,
    /// The plain floor and what reading it back as a helpdesk needs:
    /// tickets, their lists, threading, search (the module's header).
    Ticketing,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Plain => "floor",
            Shape::Ticketing => "ticketing floor",
        }
    }
}

/// A floor database and its checkpoint thread.
pub struct FloorStore {
    conn: Connection,
    checkpointer: Checkpointer,
    shape: Shape,
    uid: u32,
}

impl FloorStore {
    /// A new, empty floor database at `path` (an old one is removed first,
    /// with its WAL).
    pub fn create(path: &Path, shape: Shape) -> anyhow::Result<FloorStore> {
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
        if shape == Shape::Ticketing {
            conn.execute_batch(
                "CREATE TABLE tickets (number INTEGER PRIMARY KEY, requester TEXT NOT NULL,
                   subject TEXT NOT NULL, status TEXT NOT NULL, last_activity INTEGER NOT NULL);
                 CREATE INDEX tickets_requester ON tickets(requester, last_activity);
                 CREATE INDEX tickets_status ON tickets(status, last_activity);
                 CREATE INDEX messages_ticket ON messages(ticket);
                 CREATE VIRTUAL TABLE search USING fts5(
                   subject, body, tokenize = 'porter unicode61 remove_diacritics 2');",
            )?;
        }
        FloorStore::on(conn, path, shape, 0)
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Mails written so far (the checkpoint's UID; a ticketing floor's
    /// activity clock).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Sets that count, for a store put back to an earlier copy of itself.
    pub fn set_uid(&mut self, uid: u32) {
        self.uid = uid;
    }

    /// The tickets a ticketing floor holds (None for the plain floor): the
    /// benchmarks check them against the daemon's, so that a reply the
    /// floor failed to thread cannot pass for a cheaper new ticket.
    pub fn tickets(&self) -> anyhow::Result<Option<i64>> {
        if self.shape != Shape::Ticketing {
            return Ok(None);
        }
        let count = self
            .conn
            .query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))?;
        Ok(Some(count))
    }

    /// The floor database at `path` opened afresh (an empty page cache).
    pub fn reopen(self, path: &Path) -> anyhow::Result<FloorStore> {
        let (uid, shape) = (self.uid, self.shape);
        drop(self);
        FloorStore::on(open(path)?, path, shape, uid)
    }

    fn on(conn: Connection, path: &Path, shape: Shape, uid: u32) -> anyhow::Result<FloorStore> {
        // As the daemon: checkpoints on their own thread, not in commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(path)?;
        Ok(FloorStore {
            conn,
            checkpointer,
            shape,
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
            let header = header_fields(raw);
            tx.prepare_cached("INSERT INTO raw_mails (bytes) VALUES (?1)")?
                .execute([*raw])?;
            let raw_id = tx.last_insert_rowid();
            let ticket = match self.shape {
                Shape::Plain => raw_id,
                Shape::Ticketing => ticket_of(&tx, &header, self.uid)?,
            };
            tx.prepare_cached(
                "INSERT INTO messages (ticket, raw_mail_id, message_id, from_address)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![ticket, raw_id, header.message_id, header.from])?;
            if self.shape == Shape::Ticketing {
                tx.prepare_cached("INSERT INTO search (rowid, subject, body) VALUES (?1, ?2, ?3)")?
                    .execute(params![
                        tx.last_insert_rowid(),
                        header.subject,
                        first_text(raw, header.end)
                    ])?;
            }
            // Text-like filler when asked (the start of the mail, repeated).
            let rendered: Option<Vec<u8>> = (outbox_bytes > 0)
                .then(|| raw.iter().copied().cycle().take(outbox_bytes).collect());
            tx.prepare_cached(
                "INSERT INTO outbox (ticket, recipient, kind, status, raw)
                 VALUES (?1, ?2, 'confirmation', 'pending', ?3)",
            )?
            .execute(params![ticket, header.from, rendered])?;
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

/// The header values the floor reads.
struct Header {
    /// Where the header ends (the blank line's first byte).
    end: usize,
    message_id: String,
    from: String,
    subject: String,
    in_reply_to: Option<String>,
}

/// The ticket a ticketing floor files the mail under: the ticket of the
/// message its In-Reply-To names, its activity moved to `now`, or a new
/// ticket of its sender.
fn ticket_of(tx: &rusqlite::Transaction, header: &Header, now: u32) -> anyhow::Result<i64> {
    let parent = match &header.in_reply_to {
        Some(id) => tx
            .prepare_cached("SELECT ticket FROM messages WHERE message_id = ?1")?
            .query_row([id], |r| r.get::<_, i64>(0))
            .optional()?,
        None => None,
    };
    if let Some(ticket) = parent {
        tx.prepare_cached(
            "UPDATE tickets SET status = 'open', last_activity = ?2 WHERE number = ?1",
        )?
        .execute(params![ticket, now])?;
        return Ok(ticket);
    }
    tx.prepare_cached(
        "INSERT INTO tickets (requester, subject, status, last_activity)
         VALUES (?1, ?2, 'new', ?3)",
    )?
    .execute(params![header.from, header.subject, now])?;
    Ok(tx.last_insert_rowid())
}

/// The Message-ID, From, Subject and In-Reply-To header values, by a scan
/// of the header lines (no unfolding, no decoding: the floor does not
/// parse).
fn header_fields(raw: &[u8]) -> Header {
    let end = header_end(raw);
    let mut header = Header {
        end,
        message_id: String::new(),
        from: String::new(),
        subject: String::new(),
        in_reply_to: None,
    };
    let mut message_id = None;
    for line in raw[..end].split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let lower = line.to_ascii_lowercase();
        let value = |name: &str| line[name.len()..].trim().to_string();
        if message_id.is_none() && lower.starts_with("message-id:") {
            message_id = Some(value("message-id:"));
        } else if header.from.is_empty() && lower.starts_with("from:") {
            header.from = value("from:");
        } else if header.subject.is_empty() && lower.starts_with("subject:") {
            header.subject = value("subject:");
        } else if header.in_reply_to.is_none() && lower.starts_with("in-reply-to:") {
            header.in_reply_to = Some(value("in-reply-to:"));
        }
    }
    header.message_id = message_id.unwrap_or_else(|| format!("no-id-{}", raw.len()));
    header
}

fn header_end(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len())
}

/// The mail's first text part as it stands in the mail (the body of a
/// single-part mail; in a multipart one, from the first `text/plain` part's
/// blank line to its boundary), up to its first quoted line (`>`) and at
/// most 16 KB: what a search index must take in (postdesk indexes the new
/// text of a mail, not what it quotes), found without parsing.
fn first_text(raw: &[u8], header_end: usize) -> String {
    let body = &raw[(header_end + 4).min(raw.len())..];
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let multipart = find(&raw[..header_end], b"multipart").is_some();
    let text = match multipart.then(|| find(body, b"text/plain")).flatten() {
        Some(at) => {
            let part = &body[at..];
            let start = find(part, b"\r\n\r\n").map_or(part.len(), |i| i + 4);
            let part = &part[start..];
            &part[..find(part, b"\r\n--").unwrap_or(part.len())]
        }
        None => body,
    };
    let text = &text[..find(text, b"\r\n>").unwrap_or(text.len())];
    String::from_utf8_lossy(&text[..text.len().min(16 * 1024)]).into_owned()
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
