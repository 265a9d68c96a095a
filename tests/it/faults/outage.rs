//! A server gone for a while, on a private stack (so the shared one is
//! never disturbed): Dovecot stopped for 30 s while customers keep writing
//! (reconnects with capped backoff, logged, nothing lost), and Postfix
//! stopped for 60 s (confirmations wait in the outbox, then all go once; a
//! permanent 5xx marks the row failed, in `tickets show --json` and
//! `/metrics`).

use std::path::Path;
use std::time::{Duration, Instant};

use super::backlog::{self, Backlog, CUSTOMERS};
use super::rig::{
    Config, DaemonProcess, Log, append_all, db_count_or_zero, metric, read_box, ticket_json, within,
};
use super::stack::PrivateStack;
use crate::support::{open_store, raw_mail, send_raw, temp_dir, unique};

const SUPPORT: &str = "tickets@example.test";

fn count(db: &Path, sql: &str) -> i64 {
    db_count_or_zero(db, sql)
}

/// The seconds of each "reconnecting in N s" line, in order.
fn reconnect_delays(log: &Log) -> Vec<(Instant, u64)> {
    log.matching("IMAP connection lost")
        .into_iter()
        .filter_map(|(at, line)| {
            let secs = line.rsplit("reconnecting in ").next()?;
            Some((at, secs.trim_end_matches(" s").trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_gone_for_30_s_while_mail_flows_loses_nothing() {
    let private = PrivateStack::start().await;
    let stack = private.stack.clone();
    let dir = temp_dir();
    let config = Config::new(&stack, SUPPORT, dir.path());
    let db = config.db.clone();
    let log = Log::default();
    let mut daemon = DaemonProcess::spawn(&config.write(), &log);
    let web = daemon.web_addr().await;
    let marker = unique("flow");

    // Customers write every 1.5 s before, during and after the outage.
    let writer = {
        let stack = stack.clone();
        let marker = marker.clone();
        tokio::spawn(async move {
            let mut subjects = Vec::new();
            for i in 0..44 {
                let from = CUSTOMERS[i % CUSTOMERS.len()];
                let subject = format!("Outage {marker} mail {i}");
                let (_, raw) = raw_mail(from, SUPPORT, &subject, "Still there?", &[]);
                send_raw(&stack, from, SUPPORT, &raw).await;
                subjects.push(subject);
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            subjects
        })
    };
    within("the first mails flow", 30, || async {
        (count(&db, "SELECT count(*) FROM outbox WHERE status = 'sent'") >= 3).then_some(())
    })
    .await;
    assert_eq!(metric(web, "postdesk_imap_connected").await, 1.0);

    private.stop_dovecot().await;
    let stopped = Instant::now();
    within("the daemon notices", 30, || async {
        (metric(web, "postdesk_imap_connected").await == 0.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped.elapsed())).await;
    private.start_dovecot().await;
    let restarted = Instant::now();
    let reconnected = within("the daemon reconnects", 45, || async {
        let lines = log.matching("Connected to IMAP server");
        lines.last().map(|(at, _)| *at).filter(|at| *at > restarted)
    })
    .await;
    let subjects = writer.await.expect("the customers' writer");

    let total = subjects.len() as i64;
    within(
        "every mail is a ticket with its confirmation sent",
        120,
        || async {
            let done = count(&db, "SELECT count(*) FROM outbox WHERE status = 'sent'");
            (count(&db, "SELECT count(*) FROM tickets") == total && done == total).then_some(())
        },
    )
    .await;
    let customers: Vec<String> = CUSTOMERS.iter().map(|c| c.to_string()).collect();
    within("every confirmation arrives", 90, || async {
        let found = backlog::confirmations(&stack, &customers, &marker).await;
        (found.len() == subjects.len()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(daemon.terminate().await.success());

    let delays = reconnect_delays(&log);
    eprintln!(
        "reconnect delays: {:?}; back {:?} after Dovecot",
        delays.iter().map(|(_, s)| s).collect::<Vec<_>>(),
        reconnected - restarted
    );
    assert!(delays.len() >= 4, "the outage is logged:\n{}", log.text());
    assert!(delays.iter().all(|(_, s)| *s <= 30), "capped at 30 s");
    let secs: Vec<u64> = delays.iter().map(|(_, s)| *s).collect();
    assert!(
        secs.windows(2).all(|w| w[1] >= w[0]),
        "backing off: {secs:?}"
    );
    // The next try comes when announced (a refused connect fails at once).
    for pair in delays.windows(2) {
        let (at, announced) = pair[0];
        let gap = pair[1].0 - at;
        assert!(
            gap <= Duration::from_secs(announced + 3),
            "announced {announced} s, next try after {gap:?}"
        );
    }
    assert!(
        reconnected - restarted <= Duration::from_secs(32),
        "back within one capped backoff"
    );

    backlog::assert_once(&backlog::confirmations(&stack, &customers, &marker).await);
    let store = open_store(&db);
    let tickets = store.list_tickets(None).expect("tickets");
    for subject in &subjects {
        assert_eq!(
            tickets.iter().filter(|t| &t.subject == subject).count(),
            1,
            "{subject}"
        );
    }
    let (_, support_box) = read_box(&stack, SUPPORT, "INBOX").await;
    assert_eq!(support_box.len(), subjects.len());
    assert!(support_box.iter().all(|m| m.has_flag("Seen")));
}

/// The delivery state of the confirmation on ticket `number`.
fn confirmation_delivery(config: &Path, number: i64) -> String {
    let ticket = ticket_json(config, number);
    let messages = ticket["messages"].as_array().expect("messages");
    let confirmation = messages
        .iter()
        .find(|m| m["kind"] == "confirmation")
        .unwrap_or_else(|| panic!("ticket #{number} has a confirmation: {ticket}"));
    confirmation["delivery"]
        .as_str()
        .expect("a delivery state")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postfix_gone_for_60_s_confirmations_wait_and_go_once() {
    let private = PrivateStack::start().await;
    let stack = private.stack.clone();
    let dir = temp_dir();
    let config = Config::new(&stack, SUPPORT, dir.path());
    let config_path = config.write();
    let db = config.db.clone();
    let log = Log::default();
    let mut daemon = DaemonProcess::spawn(&config_path, &log);
    let web = daemon.web_addr().await;

    // A recipient Postfix refuses for good (550 user unknown).
    let ghost = format!("ghost-{}@example.test", unique("g"));
    let (_, raw) = raw_mail(&ghost, SUPPORT, "From nowhere", "Hello?", &[]);
    append_all(&stack, SUPPORT, "INBOX", &[raw]).await;
    within("the 5xx marks the confirmation failed", 30, || async {
        (count(&db, "SELECT count(*) FROM outbox WHERE status = 'failed'") == 1).then_some(())
    })
    .await;
    assert_eq!(confirmation_delivery(&config_path, 1), "failed");
    assert_eq!(metric(web, "postdesk_outbox_failed").await, 1.0);

    private.stop_postfix().await;
    let stopped = Instant::now();
    let backlog = Backlog::new(SUPPORT, 20, 100);
    append_all(&stack, SUPPORT, "INBOX", &backlog.mails).await;
    within(
        "the mails are tickets and their confirmations were tried",
        60,
        || async {
            let tried = count(
                &db,
                "SELECT count(*) FROM outbox WHERE status = 'pending' AND attempts >= 1",
            );
            (count(&db, "SELECT count(*) FROM tickets") == 21 && tried == 20).then_some(())
        },
    )
    .await;
    for number in 2..=21 {
        assert_eq!(confirmation_delivery(&config_path, number), "pending");
    }
    assert_eq!(metric(web, "postdesk_outbox_pending").await, 20.0);
    assert!(!log.matching("Could not send").is_empty(), "{}", log.text());
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(stopped.elapsed())).await;
    private.start_postfix().await;
    let restarted = Instant::now();

    within("every confirmation arrives", 120, || async {
        let found = backlog.confirmations(&stack).await;
        (found.len() == 20).then_some(())
    })
    .await;
    eprintln!(
        "all delivered {:?} after Postfix came back",
        restarted.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metric(web, "postdesk_outbox_pending").await, 0.0);
    assert_eq!(metric(web, "postdesk_outbox_failed").await, 1.0);
    for number in 2..=21 {
        assert_eq!(confirmation_delivery(&config_path, number), "sent");
    }
    assert_eq!(confirmation_delivery(&config_path, 1), "failed");
    assert!(daemon.terminate().await.success());
    backlog_after_ghost(&backlog, &stack, &db).await;
}

/// `backlog::verify` for a backlog that came after the ghost's ticket.
async fn backlog_after_ghost(backlog: &Backlog, stack: &crate::support::Stack, db: &Path) {
    backlog::assert_once(&backlog.confirmations(stack).await);
    let store = open_store(db);
    let tickets = store.list_tickets(None).expect("tickets");
    assert_eq!(tickets.len(), 21);
    for original in &backlog.originals {
        let hits = tickets.iter().filter(|t| t.subject == original.subject);
        assert_eq!(hits.count(), 1, "{}", original.subject);
    }
    let (_, support_box) = read_box(stack, SUPPORT, "INBOX").await;
    assert_eq!(support_box.len(), 21);
    assert!(support_box.iter().all(|m| m.has_flag("Seen")));
}
