//! SIGKILL (rules 1 and 7). A 1,000-mail backlog in the support INBOX, the
//! real binary killed at random moments ten times while it ingests and
//! sends, restarted each time; after every kill the database (as the next
//! start finds it) passes `PRAGMA integrity_check`, and in the end every
//! mail made exactly what it should and each confirmation arrived: once,
//! or twice with one Message-ID where a kill fell between Postfix taking
//! the mail and its "250" reaching us (at most one such mail per kill; see
//! `backlog::assert_delivered`). It runs on a private stack: 900 confirmations in the shared customers'
//! INBOXes would slow down every other test that reads them. And a kill
//! in the middle of one large write transaction, on the shared stack.
//! Both run on PostgreSQL too (POSTDESK_TEST_POSTGRES): there the next
//! start finds the live database (no file to copy), and the checks of
//! SQLite's files (integrity_check, WAL mode and size) are left out.

use std::path::Path;
use std::time::{Duration, Instant};

use super::backlog::{self, Backlog};
use super::rig::{Config, DaemonProcess, Log, append_all, db_count_or_zero, within};
use super::stack::PrivateStack;
use crate::support::{base64_lines, temp_dir, test_database};

const BACKLOG: usize = 1000;
const KILLS: usize = 10;
const SUPPORT: &str = "tickets@example.test";

/// xorshift64*: random kill moments, reproducible from the printed seed
/// (set POSTDESK_FAULT_SEED to replay a run).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("POSTDESK_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("kill moments from seed POSTDESK_FAULT_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound.max(1)
    }
}

/// What the next start will find: a copy of the database files taken
/// right after the kill, opened (which recovers the WAL) and checked. On
/// PostgreSQL the database itself, which the server recovers.
struct AfterKill {
    /// SQLite's `integrity_check` and journal mode of the copy.
    files: Option<(String, String)>,
    stored: i64,
    sent: i64,
}

impl AfterKill {
    /// The copy (SQLite) is sound and still in WAL mode.
    fn assert_sound(&self, when: &str) {
        if let Some((integrity, journal_mode)) = &self.files {
            assert_eq!(integrity, "ok", "integrity_check {when}");
            assert_eq!(journal_mode, "wal", "journal mode {when}");
        }
    }
}

fn check_copy(db: &Path, scratch: &Path) -> AfterKill {
    let live = test_database(db);
    if live.is_postgres() {
        return AfterKill {
            files: None,
            stored: live.scalar_i64("SELECT count(*) FROM raw_mails", &[]),
            sent: live.scalar_i64("SELECT count(*) FROM outbox WHERE status = 'sent'", &[]),
        };
    }
    let copy = scratch.join("after-kill.db");
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", db.display());
        let to = format!("{}{suffix}", copy.display());
        let _ = std::fs::remove_file(&to);
        if Path::new(&from).exists() {
            std::fs::copy(&from, &to).expect("copy the database files");
        }
    }
    let conn = rusqlite::Connection::open(&copy).expect("the copy opens");
    let one = |sql: &str| -> String {
        conn.query_row(sql, [], |r| r.get::<_, String>(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap_or(0) };
    AfterKill {
        files: Some((one("PRAGMA integrity_check"), one("PRAGMA journal_mode"))),
        stored: count("SELECT count(*) FROM raw_mails"),
        sent: count("SELECT count(*) FROM outbox WHERE status = 'sent'"),
    }
}

fn progress(db: &Path) -> i64 {
    db_count_or_zero(db, "SELECT count(*) FROM raw_mails")
        + db_count_or_zero(db, "SELECT count(*) FROM outbox WHERE status = 'sent'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_ten_times_in_a_1000_mail_backlog_loses_and_doubles_nothing() {
    let t0 = Instant::now();
    let private = PrivateStack::start().await;
    let stack = &private.stack;
    let dir = temp_dir();
    let backlog = Backlog::new(SUPPORT, BACKLOG, 10);
    append_all(stack, SUPPORT, "INBOX", &backlog.mails).await;
    eprintln!(
        "{} mails ({} new, {} follow-ups) appended after {:?}",
        backlog.mails.len(),
        backlog.originals.len(),
        backlog.follow_ups.len(),
        t0.elapsed()
    );
    let config = Config::new(stack, SUPPORT, dir.path());
    let config_path = config.write();
    let db = config.db.clone();
    let log = Log::default();
    let mut rng = Rng::seeded();

    let expected = backlog.originals.len() as i64;
    // Each mail stored, each confirmation sent.
    let all_work = BACKLOG as i64 + expected;
    let mut done_before = 0;
    for round in 1..=KILLS {
        let mut daemon = DaemonProcess::spawn(&config_path, &log);
        // The restarted daemon makes progress: it started, and the kill
        // below lands while it works (ingest first, sending later). Should
        // a fast machine finish early, later kills land on an idle daemon,
        // once this one has connected (its own log line, by its pid).
        let connected = format!("[{}] ", daemon.pid());
        within("the daemon makes progress", 60, || async {
            let idle = done_before >= all_work
                && log
                    .matching("Connected to IMAP")
                    .iter()
                    .any(|(_, line)| line.starts_with(&connected));
            (progress(&db) > done_before || idle).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.below(1200))).await;
        let uptime = daemon.uptime();
        daemon.kill9();
        let after = check_copy(&db, dir.path());
        eprintln!(
            "kill {round} after {uptime:?} of uptime: {} mails stored, {} mails sent",
            after.stored, after.sent
        );
        after.assert_sound(&format!("after kill {round}"));
        done_before = after.stored + after.sent;
    }

    let mut daemon = DaemonProcess::spawn(&config_path, &log);
    within(
        "every mail is stored and every confirmation sent",
        300,
        || async {
            let stored = db_count_or_zero(&db, "SELECT count(*) FROM raw_mails");
            let sent = db_count_or_zero(&db, "SELECT count(*) FROM outbox WHERE status = 'sent'");
            (stored == BACKLOG as i64 && sent >= expected).then_some(())
        },
    )
    .await;
    eprintln!("all stored and sent after {:?}", t0.elapsed());
    // Postfix hands the last confirmations to Dovecot within moments.
    within("the confirmations reach the INBOXes", 120, || async {
        let found = backlog.confirmations(stack).await;
        (found.len() >= expected as usize).then_some(())
    })
    .await;
    // Room for a second copy of any of them to arrive too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = daemon.terminate().await;
    assert!(status.success(), "the daemon stops cleanly: {status}");
    let starts = log.matching("postdesk is running").len();
    assert_eq!(starts, KILLS + 1, "every restart started the daemon");
    backlog::verify(&backlog, stack, &db, KILLS).await;
    eprintln!("verified after {:?}", t0.elapsed());
}

/// A customer mail carrying `size` bytes of attachment that is unlike any
/// other (so the blobs do not dedupe), base64 as a client would send it.
fn mail_with_attachment(from: &str, to: &str, subject: &str, seed: u64, size: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let bytes: Vec<u8> = (0..size).map(|_| rng.below(256) as u8).collect();
    let encoded = base64_lines(&bytes);
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@customer.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nThe log is attached.\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"log.bin\"\r\n\
         Content-Disposition: attachment; filename=\"log.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b--\r\n",
        crate::support::unique("att")
    )
    .into_bytes()
}

/// Whether a write transaction is under way and well along: SQLite's WAL
/// has grown past 4 MB, or a PostgreSQL session of the daemon holds a
/// transaction that has written (a transaction ID) and began a moment ago
/// (not the migrations' or a lease's: the ingest's transaction begins
/// before the large mail is parsed and writes only after).
fn mid_write(db: &Path) -> bool {
    let live = test_database(db);
    if !live.is_postgres() {
        let wal = std::fs::metadata(format!("{}-wal", db.display()));
        return wal.map(|m| m.len()).unwrap_or(0) > 4_000_000;
    }
    let writing = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL \
                   AND xact_start < now() - interval '300 milliseconds'";
    live.count_or_zero(writing, &[]) > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_write_leaves_a_sound_database() {
    let stack = crate::support::Stack::from_env();
    let support = crate::support::fresh_support_box(&stack).await;
    let customers = backlog::own_customers(&stack, 2).await;
    // First a mail of ~24 MB (an 18 MB attachment, under the 25 MB limit):
    // alone in its IMAP batch (a batch holds 1 MB of mail, a larger one goes
    // alone), a transaction too big for SQLite's page cache, so it spills
    // into the WAL before commit, and long enough on PostgreSQL to be seen
    // writing. Then small mails, in batches of their own after it.
    let mails: Vec<Vec<u8>> = (0..MAILS)
        .map(|i| {
            let from = &customers[i % customers.len()];
            let subject = format!("Crash log {i} {}", crate::support::unique("w"));
            let size = if i == 0 { 18_000_000 } else { 400_000 };
            mail_with_attachment(from, &support, &subject, i as u64 + 7, size)
        })
        .collect();
    append_all(&stack, &support, "INBOX", &mails).await;
    let dir = temp_dir();
    let config = Config::new(&stack, &support, dir.path());
    let config_path = config.write();
    let db = config.db.clone();
    let log = Log::default();

    let mut daemon = DaemonProcess::spawn(&config_path, &log);
    // Mid-write: the WAL grows while no mail is committed yet.
    let watched = db.clone();
    within_often(
        "the first batch's transaction is being written",
        120,
        move || {
            let stored = db_count_or_zero(&watched, "SELECT count(*) FROM raw_mails");
            mid_write(&watched) && stored == 0
        },
    )
    .await;
    daemon.kill9();
    let after = check_copy(&db, dir.path());
    after.assert_sound("after the kill");
    assert_eq!(
        after.stored, 0,
        "the half-written batch is not there at all"
    );
    let (_, support_box) = super::rig::read_box(&stack, &support, "INBOX").await;
    assert!(
        support_box.iter().all(|m| !m.has_flag("Seen")),
        "nothing was marked before its commit"
    );

    let mut daemon = DaemonProcess::spawn(&config_path, &log);
    within("the batch is stored after the restart", 180, || async {
        let stored = db_count_or_zero(&db, "SELECT count(*) FROM raw_mails");
        let (_, support_box) = super::rig::read_box(&stack, &support, "INBOX").await;
        (stored == MAILS as i64 && support_box.iter().all(|m| m.has_flag("Seen"))).then_some(())
    })
    .await;
    assert!(daemon.terminate().await.success());
    let live = test_database(&db);
    if !live.is_postgres() {
        let check = live.scalar_text("PRAGMA integrity_check", &[]);
        assert_eq!(check, "ok");
    }
    let count = |sql: &str| live.scalar_i64(sql, &[]);
    let mails = MAILS as i64;
    assert_eq!(count("SELECT count(*) FROM tickets"), mails);
    assert_eq!(count("SELECT count(*) FROM attachments"), mails);
    assert_eq!(
        count("SELECT count(DISTINCT dedup_key) FROM raw_mails"),
        mails
    );
}

/// The mails of the SIGKILL test: one large, then small ones.
const MAILS: usize = 5;

/// [`within`] polling every 10 ms on a blocking thread: the write it
/// waits for lasts a fraction of a second.
async fn within_often(what: &str, secs: u64, check: impl Fn() -> bool + Send + 'static) {
    let what = what.to_string();
    let waited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !check() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        true
    })
    .await
    .expect("the polling thread");
    assert!(waited, "timed out after {secs} s waiting until {what}");
}
