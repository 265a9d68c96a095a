//! SIGKILL during an LMTP burst (rule 1, issue 12 §3). The real daemon as a
//! child process takes mail only over LMTP (IMAP off); the private stack's
//! Postfix relays a test domain to it and gets a burst of 300 customer
//! mails. The daemon is SIGKILLed twice while Postfix delivers and
//! restarted on the same port; Postfix defers what it could not hand over
//! and retries (the stack's retry timers are seconds). In the end every
//! mail is stored exactly once (one ticket each, none lost, none doubled)
//! and each customer got its confirmation: once, or twice with one
//! Message-ID where a kill fell between Postfix taking it and its "250"
//! (at most one per kill, as `backlog::assert_delivered` counts).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::backlog::{Backlog, assert_delivered};
use super::rig::{DaemonProcess, Log, db_count_or_zero, within};
use super::stack::PrivateStack;
use crate::support::{Stack, open_store, send_raw, temp_dir, test_database};

const BURST: usize = 300;
const KILLS: usize = 2;

/// `postdesk run` on LMTP only, at `port`, sending through the stack.
fn write_config(stack: &Stack, support: &str, port: u16, dir: &Path) -> std::path::PathBuf {
    let db = dir.join("postdesk.db");
    let text = format!(
        r#"[support]
address = {support:?}
name = "Example Support"
public_url = "http://127.0.0.1:8025"

[imap]
enabled = false

[lmtp]
listen = "127.0.0.1:{port}"

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
timeout_seconds = 10

[database]
{database}
[web]
listen = "127.0.0.1:0"

[limits]
auto_replies_per_hour = 100000
"#,
        smtp = stack.smtp_port,
        database = test_database(&db).toml(),
    );
    let path = dir.join("postdesk.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Lines of the stack's Postfix log that deferred a delivery to `domain`.
fn deferred(stack_dir: &Path, domain: &str) -> usize {
    let log = std::fs::read_to_string(stack_dir.join("log/postfix.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("status=deferred") && l.contains(domain))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_an_lmtp_burst_of_300_loses_and_doubles_nothing() {
    let t0 = Instant::now();
    let private = PrivateStack::start().await;
    let stack = private.stack.clone();
    let port = crate::support::free_listen_port();
    let domain = "burst.lmtp.test";
    let stack_dir = private.dir.clone();
    tokio::task::spawn_blocking(move || {
        let hop = format!("lmtp:inet:127.0.0.1:{port}");
        crate::lmtp::route(&stack_dir, domain, Some(&hop));
    })
    .await
    .expect("routed");
    let support = format!("help@{domain}");
    let dir = temp_dir();
    let config = write_config(&stack, &support, port, dir.path());
    let db = dir.path().join("postdesk.db");
    let log = Log::default();
    let backlog = Backlog::new(&support, BURST, BURST + 1);
    assert_eq!(backlog.originals.len(), BURST, "every mail opens a ticket");

    let mut daemon = DaemonProcess::spawn(&config, &log);
    daemon.web_addr().await;
    let burst = tokio::spawn({
        let (stack, support) = (stack.clone(), support.clone());
        let mails: Vec<(String, Vec<u8>)> = backlog
            .originals
            .iter()
            .zip(&backlog.mails)
            .map(|(o, raw)| (o.from.clone(), raw.clone()))
            .collect();
        async move {
            for (from, raw) in mails {
                send_raw(&stack, &from, &support, &raw).await;
            }
        }
    });
    for (round, at) in [40_i64, 160].into_iter().enumerate() {
        within("the daemon stores part of the burst", 120, || async {
            (db_count_or_zero(&db, "SELECT count(*) FROM raw_mails") >= at).then_some(())
        })
        .await;
        daemon.kill9();
        let stored = db_count_or_zero(&db, "SELECT count(*) FROM raw_mails");
        eprintln!(
            "kill {} after {:?}: {stored} mails stored",
            round + 1,
            t0.elapsed()
        );
        // Down long enough for Postfix to find the port closed.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        daemon = DaemonProcess::spawn(&config, &log);
        daemon.web_addr().await;
    }
    burst.await.expect("the burst was submitted");
    within("every mail is stored and confirmed", 300, || async {
        let stored = db_count_or_zero(&db, "SELECT count(*) FROM raw_mails");
        let sent = db_count_or_zero(&db, "SELECT count(*) FROM outbox WHERE status = 'sent'");
        (stored >= BURST as i64 && sent >= BURST as i64).then_some(())
    })
    .await;
    eprintln!("all stored and sent after {:?}", t0.elapsed());
    within("the confirmations reach the INBOXes", 120, || async {
        (backlog.confirmations(&stack).await.len() >= BURST).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        daemon.terminate().await.success(),
        "the daemon stops cleanly"
    );
    let retried = deferred(&private.dir, domain);
    eprintln!("Postfix deferred {retried} deliveries while the daemon was down");
    assert!(retried > 0, "Postfix met the killed daemon and retried");
    verify(&backlog, &stack, &db).await;
}

/// One ticket per mail with its Message-ID, one stored copy of each, each
/// confirmation received (repeats only as the kills allow).
async fn verify(backlog: &Backlog, stack: &Stack, db: &Path) {
    let store = open_store(db);
    let tickets = store.list_tickets(None).expect("tickets");
    assert_eq!(
        tickets.len(),
        BURST,
        "one ticket per mail: none lost, none doubled"
    );
    let count = |sql: &str| db_count_or_zero(db, sql);
    assert_eq!(count("SELECT count(*) FROM raw_mails"), BURST as i64);
    assert_eq!(
        count("SELECT count(DISTINCT dedup_key) FROM raw_mails"),
        BURST as i64
    );
    assert_eq!(
        count("SELECT count(*) FROM quarantine"),
        0,
        "nothing quarantined"
    );
    let by_subject: BTreeMap<&str, i64> = tickets
        .iter()
        .map(|t| (t.subject.as_str(), t.number.0))
        .collect();
    let lost: Vec<&str> = backlog
        .originals
        .iter()
        .filter(|o| !by_subject.contains_key(o.subject.as_str()))
        .map(|o| o.subject.as_str())
        .collect();
    assert!(lost.is_empty(), "mails without a ticket: {lost:?}");
    let found = backlog.confirmations(stack).await;
    let missing: Vec<i64> = by_subject
        .values()
        .filter(|n| !found.contains_key(n))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "confirmations never received: {missing:?}"
    );
    assert_delivered(&found, KILLS);
}
