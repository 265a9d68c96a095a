//! Several daemons on one PostgreSQL database (issue 15 §2): three real
//! `postdesk run` processes share six support mailboxes (six queues) of the
//! shared mail stack and a database of a private cluster. A burst of 600
//! customer mails (100 per mailbox) arrives over SMTP; mid-burst the daemon
//! holding the most mailbox leases is SIGKILLed, and once the survivors
//! have taken its mailboxes over, PostgreSQL is stopped for 20 s and
//! started again. In the end: the takeover came within 30 s, each mail made
//! exactly one ticket in its queue (none lost, none doubled), every
//! confirmation reached its customer (a repeat only for the kill, with the
//! same Message-ID), every support mail is marked, and the survivors'
//! `/healthz` agree on who holds which mailbox. Runs only against
//! PostgreSQL (`POSTDESK_TEST_POSTGRES` set); the cluster it stops is its
//! own, never the suite's.

pub(crate) mod cluster;
mod leases;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::backlog::{Backlog, assert_delivered, confirmations, own_customers};
use super::rig::{DaemonProcess, Log, read_box, within};
use crate::support::{Stack, TestDir, fresh_support_box, send_raw, temp_dir};
use cluster::{PrivateCluster, count_or_zero, rows};
use leases::{all_running, health_agrees, kill_busiest, last_lines, leases, takeover};

const DAEMONS: usize = 3;
const MAILBOXES: usize = 6;
const PER_MAILBOX: usize = 100;
const TOTAL: usize = MAILBOXES * PER_MAILBOX;
const CUSTOMERS: usize = 6;
/// Between two mails of one mailbox: the burst lasts about a minute, so
/// both faults fall inside it.
const SEND_GAP: Duration = Duration::from_millis(450);
/// Mails stored when the kill comes.
const KILL_AT: i64 = 120;
const OUTAGE: Duration = Duration::from_secs(20);
const TAKEOVER_LIMIT: Duration = Duration::from_secs(30);

/// `postdesk run` on the six mailboxes (the first `[support]`, the others
/// `[[mailbox]]`), the database at `url`, files beside `path`.
fn write_config(stack: &Stack, boxes: &[String], url: &str, path: &Path) -> PathBuf {
    let first = &boxes[0];
    let mut text = format!(
        r#"[support]
queue = "q0"
address = {first:?}
name = "Example Support"
public_url = "http://127.0.0.1:8025"

[imap]
host = "127.0.0.1"
port = {imap}
tls = "none"
username = {first:?}
password = {password:?}
after_ingest = "seen"
poll_seconds = 1
timeout_seconds = 10

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
timeout_seconds = 10

[database]
path = {db:?}
url = {url:?}

[web]
listen = "127.0.0.1:0"

[limits]
auto_replies_per_hour = 100000
"#,
        imap = stack.imap_port,
        password = stack.password,
        smtp = stack.smtp_port,
        db = path.display().to_string(),
    );
    for (i, address) in boxes.iter().enumerate().skip(1) {
        text.push_str(&format!(
            "\n[[mailbox]]\nqueue = \"q{i}\"\naddress = {address:?}\nimap.username = {address:?}\n"
        ));
    }
    let config = path.with_file_name("postdesk.toml");
    std::fs::write(&config, text).expect("write the config");
    config
}

/// Sends each backlog to its mailbox, the six at once, each mail after
/// [`SEND_GAP`]; counts what was sent in `sent`.
fn burst(
    stack: &Stack,
    backlogs: &[Backlog],
    sent: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for backlog in backlogs {
        let (stack, sent) = (stack.clone(), Arc::clone(sent));
        let support = backlog.support.clone();
        let mails: Vec<(String, Vec<u8>)> = (backlog.originals.iter().zip(&backlog.mails))
            .map(|(o, raw)| (o.from.clone(), raw.clone()))
            .collect();
        tasks.push(tokio::spawn(async move {
            for (from, raw) in mails {
                send_raw(&stack, &from, &support, &raw).await;
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(SEND_GAP).await;
            }
        }));
    }
    tasks
}

/// What the test works with: the shared stack, its own cluster and
/// database, the six backlogs and the customers who receive their
/// confirmations, the daemons' log.
struct World {
    stack: Stack,
    pg: PrivateCluster,
    url: String,
    backlogs: Vec<Backlog>,
    customers: Vec<String>,
    dir: TestDir,
    log: Log,
    t0: Instant,
}

impl World {
    async fn new() -> World {
        let t0 = Instant::now();
        let stack = Stack::from_env();
        let pg = PrivateCluster::start().await;
        let url = pg.create_database("pd_instances").await;
        let mut boxes = Vec::new();
        for _ in 0..MAILBOXES {
            boxes.push(fresh_support_box(&stack).await);
        }
        let customers = own_customers(&stack, CUSTOMERS).await;
        let backlogs = (boxes.iter())
            .map(|b| Backlog::with_customers(b, &customers, PER_MAILBOX, PER_MAILBOX + 1))
            .collect();
        let (dir, log) = (temp_dir(), Log::default());
        World {
            stack,
            pg,
            url,
            backlogs,
            customers,
            dir,
            log,
            t0,
        }
    }

    fn secs(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn stored(&self) -> i64 {
        count_or_zero(&self.url, "SELECT count(*) FROM raw_mails")
    }

    /// The daemons, each with its own config and directory (as on three
    /// machines), once every mailbox is leased.
    async fn spawn_daemons(&self) -> Vec<DaemonProcess> {
        let boxes: Vec<String> = self.backlogs.iter().map(|b| b.support.clone()).collect();
        let daemons: Vec<DaemonProcess> = (0..DAEMONS)
            .map(|i| {
                let own = self.dir.path().join(format!("d{i}"));
                std::fs::create_dir_all(&own).expect("a directory per daemon");
                let config = write_config(&self.stack, &boxes, &self.url, &own.join("postdesk.db"));
                DaemonProcess::spawn(&config, &self.log)
            })
            .collect();
        for d in &daemons {
            d.web_addr().await;
        }
        within("all six mailboxes are leased", 30, || async {
            (leases(&self.url).len() == MAILBOXES).then_some(())
        })
        .await;
        println!(
            "started after {:.1} s; leases: {:?}",
            self.secs(),
            leases(&self.url)
        );
        daemons
    }

    /// Mid-burst, SIGKILLs the daemon reading the most mailboxes; checks
    /// the takeover; the survivors.
    async fn kill_one(
        &self,
        mut daemons: Vec<DaemonProcess>,
        sent: &AtomicUsize,
    ) -> Vec<DaemonProcess> {
        within("the daemons store part of the burst", 120, || async {
            (self.stored() >= KILL_AT).then_some(())
        })
        .await;
        let (killed, dead, taken) = kill_busiest(&mut daemons, &self.url);
        let (at, sent_then, stored) = (self.secs(), sent.load(Ordering::SeqCst), self.stored());
        println!(
            "SIGKILL {dead} holding {taken:?} at {at:.1} s: {sent_then} sent, {stored} stored"
        );
        let mut survivors: Vec<DaemonProcess> = (daemons.into_iter().enumerate())
            .filter_map(|(i, d)| (i != killed).then_some(d))
            .collect();
        let alive: Vec<u32> = survivors.iter().map(DaemonProcess::pid).collect();
        let limit = TAKEOVER_LIMIT.as_secs() + 5;
        let seconds = takeover(&self.url, &dead, &taken, &alive, limit).await;
        println!("taken over after {seconds:.1} s: {:?}", leases(&self.url));
        all_running(&mut survivors, &self.log);
        assert!(
            seconds <= TAKEOVER_LIMIT.as_secs_f64(),
            "the dead daemon's mailboxes were taken over after {seconds:.1} s, over {TAKEOVER_LIMIT:?}"
        );
        survivors
    }

    /// PostgreSQL away for [`OUTAGE`], while the burst goes on.
    async fn restart_database(&self, sent: &AtomicUsize) {
        let (down_at, sent_before, stored) =
            (self.secs(), sent.load(Ordering::SeqCst), self.stored());
        self.pg.stop().await;
        tokio::time::sleep(OUTAGE).await;
        self.pg.start_again().await;
        println!(
            "PostgreSQL down from {down_at:.1} s to {:.1} s ({stored} stored before); \
             {sent_before} -> {} mails sent meanwhile",
            self.secs(),
            sent.load(Ordering::SeqCst),
        );
    }
}

impl Drop for World {
    /// A failed run shows what the daemons said last.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines: Vec<String> = self.log.lines().into_iter().map(|(_, l)| l).collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("the daemons' last lines:\n{}", tail.join("\n"));
            // ERROR lines, panics and the binary's own last word before exiting.
            let bad = (lines.iter()).filter(|l| {
                l.contains(" ERROR ") || l.contains("panicked") || l.contains("] postdesk: ")
            });
            let bad: Vec<&String> = bad.take(20).collect();
            eprintln!("their first errors: {bad:#?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_six_mailboxes_a_kill_and_a_database_restart_lose_and_double_nothing() {
    let on_postgres = std::env::var("POSTDESK_TEST_POSTGRES").is_ok_and(|u| !u.trim().is_empty());
    if !on_postgres {
        eprintln!("skipped: several daemons need PostgreSQL (POSTDESK_TEST_POSTGRES unset)");
        return;
    }
    let world = World::new().await;
    let daemons = world.spawn_daemons().await;
    let sent = Arc::new(AtomicUsize::new(0));
    let tasks = burst(&world.stack, &world.backlogs, &sent);
    let mut survivors = world.kill_one(daemons, &sent).await;
    world.restart_database(&sent).await;
    let back = Instant::now();
    for task in tasks {
        task.await.expect("the burst was submitted");
    }
    let mut webs = Vec::new();
    for d in &survivors {
        webs.push(d.web_addr().await);
    }
    all_running(&mut survivors, &world.log);
    let alive: Vec<u32> = survivors.iter().map(DaemonProcess::pid).collect();
    let burst_over = Instant::now();
    health_agrees(&world.url, &webs, &alive, &world.log).await;
    let (again, agreed) = (back.elapsed(), burst_over.elapsed());
    println!(
        "every mailbox read again {:.1} s after the restart; /healthz agreed {:.1} s after the burst",
        again.as_secs_f64(),
        agreed.as_secs_f64()
    );
    finish(&world, survivors).await;
}

/// Waits for the backlog to drain, stops the survivors, prints the
/// figures and checks the result.
async fn finish(world: &World, survivors: Vec<DaemonProcess>) {
    let (url, stack, customers) = (&world.url, &world.stack, &world.customers);
    let total = TOTAL as i64;
    within("every mail is stored and confirmed", 300, || async {
        let sent = count_or_zero(url, "SELECT count(*) FROM outbox WHERE status = 'sent'");
        (world.stored() >= total && sent >= total).then_some(())
    })
    .await;
    println!("all stored and sent after {:.1} s", world.secs());
    within("the confirmations reach the INBOXes", 120, || async {
        (confirmations(stack, customers, "Backlog ").await.len() >= TOTAL).then_some(())
    })
    .await;
    // Room for a late repeat to arrive, so it is counted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for mut d in survivors {
        let pid = d.pid();
        let status = d.terminate().await;
        let tail = last_lines(&world.log, pid, 20);
        assert!(
            status.success(),
            "survivor {pid} stopped with {status}:\n{tail}"
        );
    }
    let requeued: Vec<String> = (world.log.matching("are queued again").into_iter())
        .map(|(_, l)| l)
        .collect();
    let found = confirmations(stack, customers, "Backlog ").await;
    let repeats = found.values().filter(|c| c.len() > 1).count();
    println!(
        "figures: {TOTAL} mails, {} tickets, {} confirmations received ({repeats} repeated), \
         wall time {:.1} s; requeued: {requeued:#?}",
        count_or_zero(url, "SELECT count(*) FROM tickets"),
        found.values().map(Vec::len).sum::<usize>(),
        world.secs()
    );
    verify_tickets(url, &world.backlogs);
    for backlog in &world.backlogs {
        support_box_marked(stack, &backlog.support).await;
    }
    let missing = TOTAL - found.len();
    assert_eq!(missing, 0, "{missing} tickets' confirmations never arrived");
    assert_delivered(&found, 1);
}

/// One ticket per mail, in its mailbox's queue; one stored copy each;
/// nothing quarantined; every outgoing mail sent.
fn verify_tickets(url: &str, backlogs: &[Backlog]) {
    let count = |sql: &str| count_or_zero(url, sql);
    let total = TOTAL as i64;
    assert_eq!(
        count("SELECT count(*) FROM raw_mails"),
        total,
        "stored mails"
    );
    assert_eq!(
        count("SELECT count(DISTINCT dedup_key) FROM raw_mails"),
        total
    );
    assert_eq!(
        count("SELECT count(*) FROM quarantine"),
        0,
        "nothing quarantined"
    );
    assert_eq!(
        count("SELECT count(*) FROM tickets"),
        total,
        "one ticket per mail: none lost, none doubled"
    );
    let unsent = rows(
        url,
        "SELECT id, kind, status FROM outbox WHERE status <> 'sent'",
    )
    .expect("the outbox");
    assert!(unsent.is_empty(), "outgoing mails not sent: {unsent:?}");
    let tickets = rows(url, "SELECT subject, queue FROM tickets").expect("the tickets");
    let mut by_subject: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in tickets {
        by_subject
            .entry(t[0].clone())
            .or_default()
            .push(t[1].clone());
    }
    let mut lost = Vec::new();
    for (i, backlog) in backlogs.iter().enumerate() {
        let queue = format!("q{i}");
        for original in &backlog.originals {
            match by_subject.get(&original.subject) {
                None => lost.push(original.subject.clone()),
                Some(queues) => assert_eq!(queues, &vec![queue.clone()], "{}", original.subject),
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} mails made no ticket: {lost:?}",
        lost.len()
    );
}

/// The support mailbox holds each of its 100 mails once, all `\Seen`.
async fn support_box_marked(stack: &Stack, support: &str) {
    let (_, mails) = read_box(stack, support, "INBOX").await;
    assert_eq!(mails.len(), PER_MAILBOX, "{support}'s INBOX size");
    let unseen: Vec<u32> = (mails.iter())
        .filter(|m| !m.has_flag("Seen"))
        .map(|m| m.uid)
        .collect();
    assert!(
        unseen.is_empty(),
        "{support}: {} stored mails not \\Seen: {unseen:?}",
        unseen.len()
    );
}
