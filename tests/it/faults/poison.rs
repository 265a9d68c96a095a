//! Poison mail (rules 1 and 7): a mail that cannot be parsed, and one over
//! the size limit, sit in the support INBOX in front of good mail. They go
//! to the quarantine with their reasons, the mails behind them flow, and
//! the operator works the quarantine with `postdesk quarantine
//! list|retry|drop`. Of the oversize mail only the header is fetched (its
//! RFC822.SIZE is looked at first), and even `after_ingest = "delete"`
//! leaves it on the server. A mail that takes very long to process must not
//! hold up the mails behind it either.

use std::path::Path;
use std::time::{Duration, Instant};

use super::backlog::{self, Backlog};
use super::rig::{
    Config, DaemonProcess, Log, append_all, cli, db_count_or_zero, metric, read_box, within,
};
use crate::support::{Stack, fresh_support_box, raw_mail, temp_dir, test_database, unique};

fn count(db: &Path, sql: &str) -> i64 {
    db_count_or_zero(db, sql)
}

fn quarantine_json(config: &Path) -> Vec<serde_json::Value> {
    let (code, out, err) = cli(config, &["quarantine", "list", "--json"]);
    assert_eq!(code, Some(0), "quarantine list: {err}");
    serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("a JSON array")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_mail_is_quarantined_and_the_mails_behind_it_flow() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let customers = backlog::own_customers(&stack, 2).await;
    let sender = customers[0].clone();
    let unreadable = format!(
        "{} is not a mail header\r\nneither is this\r\n\r\nbody\r\n",
        unique("junk")
    )
    .into_bytes();
    let big_subject = format!("Scans {}", unique("big"));
    let (big_id, big) = raw_mail(
        &sender,
        &support,
        &big_subject,
        &"scan data ".repeat(3_000),
        &[],
    );
    let good = Backlog::with_customers(&support, &customers, 10, 100);
    let big_size = big.len() as i64;
    let mut mails = vec![unreadable, big.clone()];
    mails.extend(good.mails.iter().cloned());
    append_all(&stack, &support, "INBOX", &mails).await;

    let dir = temp_dir();
    let mut config = Config::new(&stack, &support, dir.path());
    config.extra = "max_message_bytes = 20000\n".to_string();
    let config_path = config.write();
    let db = config.db.clone();
    let log = Log::default();
    let mut daemon = DaemonProcess::spawn(&config_path, &log);
    let web = daemon.web_addr().await;
    within("the good mails are tickets", 60, || async {
        (count(&db, "SELECT count(*) FROM tickets") == 10).then_some(())
    })
    .await;
    within("every support mail is marked", 30, || async {
        let (_, box_) = read_box(&stack, &support, "INBOX").await;
        (box_.len() == 12 && box_.iter().all(|m| m.has_flag("Seen"))).then_some(())
    })
    .await;

    let items = quarantine_json(&config_path);
    assert_eq!(items.len(), 2, "{items:?}");
    let reason_of = |needle: &str| {
        items
            .iter()
            .find(|i| i["reason"].as_str().unwrap_or("").contains(needle))
            .unwrap_or_else(|| panic!("a quarantined mail because {needle}: {items:?}"))
            .clone()
    };
    let unreadable_item = reason_of("cannot be read");
    let big_item = reason_of("more than the limit of 20000 bytes");
    assert_eq!(big_item["size"].as_i64(), Some(big_size), "its full size");
    let big_reason = big_item["reason"].as_str().unwrap_or("");
    assert!(
        big_reason.contains("the full mail stays on the IMAP server (mailbox INBOX, UID "),
        "{big_reason}"
    );
    let kept = "SELECT count(*) FROM raw_mails WHERE size > 20000 AND length(bytes) < 2000";
    assert_eq!(
        count(&db, kept),
        1,
        "only the big mail's header was fetched"
    );
    assert_eq!(metric(web, "postdesk_mails_quarantined_total").await, 2.0);
    // Its sender is told, politely.
    within("the sender of the big mail is told", 30, || async {
        let (_, inbox) = read_box(&stack, &sender, "INBOX").await;
        inbox
            .iter()
            .filter_map(|m| postdesk::ingest::parse::parse(&m.raw).ok())
            .find(|m| m.subject == format!("Re: {big_subject}"))
            .filter(|m| m.text.contains("we could not take your mail"))
    })
    .await;

    // retry: the unreadable one still fails and stays; so does the big one
    // even with the limit raised (only its header is here), until the
    // operator pipes in the whole mail from the server.
    let id = |item: &serde_json::Value| item["id"].as_i64().expect("an id").to_string();
    let (code, _, err) = cli(
        &config_path,
        &["quarantine", "retry", &id(&unreadable_item)],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("still cannot be processed"), "{err}");
    assert_eq!(quarantine_json(&config_path).len(), 2);

    config.extra = String::new();
    let raised = config.write_as("raised.toml");
    let (code, _, err) = cli(&raised, &["quarantine", "retry", &id(&big_item)]);
    assert_eq!(code, Some(1), "the header alone made a ticket: {err}");
    assert!(err.contains("postdesk ingest"), "{err}");
    let (_, box_) = read_box(&stack, &support, "INBOX").await;
    let whole = box_
        .iter()
        .find(|m| m.raw == big)
        .expect("the big mail on the server");
    let file = dir.path().join("big.eml");
    std::fs::write(&file, &whole.raw).expect("write the mail");
    let path = file.to_string_lossy().to_string();
    let (code, out, err) = cli(&raised, &["ingest", &path]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("new ticket #11"), "{out}");
    let (code, out, _) = cli(&raised, &["explain", &big_id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("went to ticket #11"), "{out}");

    // drop: gone, with its stored bytes.
    let (code, out, err) = cli(&raised, &["quarantine", "drop", &id(&unreadable_item)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("deleted"), "{out}");
    let (code, _, err) = cli(&raised, &["quarantine", "drop", &id(&big_item)]);
    assert_eq!(code, Some(0), "{err}");
    assert!(quarantine_json(&raised).is_empty());
    assert_eq!(count(&db, "SELECT count(*) FROM raw_mails"), 11);
    let (code, _, _) = cli(&raised, &["quarantine", "drop", &id(&unreadable_item)]);
    assert_eq!(code, Some(1));

    // The piped-in mail's confirmation goes out through the running daemon.
    let confirmation = format!("[Ticket #11] {big_subject}");
    within("the piped-in mail is confirmed", 30, || async {
        let (_, inbox) = read_box(&stack, &sender, "INBOX").await;
        let n = inbox
            .iter()
            .filter_map(|m| postdesk::ingest::parse::parse(&m.raw).ok())
            .filter(|m| m.subject == confirmation)
            .count();
        (n == 1).then_some(())
    })
    .await;
    within("the good mails are confirmed", 30, || async {
        (good.confirmations(&stack).await.len() == 10).then_some(())
    })
    .await;
    assert!(daemon.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_delete_an_oversize_mail_stays_on_the_server_and_the_mails_behind_it_flow() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let customers = backlog::own_customers(&stack, 2).await;
    let sender = customers[0].clone();
    let big_subject = format!("Scans {}", unique("big"));
    let scans = "scan data ".repeat(3_000);
    let (_, big) = raw_mail(&sender, &support, &big_subject, &scans, &[]);
    let good = Backlog::with_customers(&support, &customers, 5, 100);
    let mut mails = vec![big.clone()];
    mails.extend(good.mails.iter().cloned());
    append_all(&stack, &support, "INBOX", &mails).await;

    let dir = temp_dir();
    let mut config = Config::new(&stack, &support, dir.path());
    config.after_ingest = "delete".to_string();
    config.extra = "max_message_bytes = 20000\n".to_string();
    let config_path = config.write();
    let db = config.db.clone();
    let log = Log::default();
    let mut daemon = DaemonProcess::spawn(&config_path, &log);
    within(
        "the good mails are tickets, deleted from the server",
        60,
        || async {
            let (_, box_) = read_box(&stack, &support, "INBOX").await;
            let tickets = count(&db, "SELECT count(*) FROM tickets");
            (tickets == 5 && box_.len() == 1 && box_[0].has_flag("Seen")).then_some(())
        },
    )
    .await;
    let (_, box_) = read_box(&stack, &support, "INBOX").await;
    assert!(
        box_[0].raw == big,
        "the oversize mail stays whole on the server"
    );
    assert!(!box_[0].has_flag("Deleted"));

    let items = quarantine_json(&config_path);
    assert_eq!(items.len(), 1, "{items:?}");
    let reason = items[0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("more than the limit of 20000 bytes")
            && reason.contains("the full mail stays on the IMAP server (mailbox INBOX, UID "),
        "{reason}"
    );
    within("the sender of the big mail is told", 30, || async {
        let (_, inbox) = read_box(&stack, &sender, "INBOX").await;
        inbox
            .iter()
            .filter_map(|m| postdesk::ingest::parse::parse(&m.raw).ok())
            .find(|m| m.subject == format!("Re: {big_subject}"))
            .filter(|m| m.text.contains("more than the limit of 20000 bytes"))
    })
    .await;
    within("the good mails are confirmed", 30, || async {
        (good.confirmations(&stack).await.len() == 5).then_some(())
    })
    .await;
    assert!(daemon.terminate().await.success());
    // A restart finds nothing new and still leaves it there.
    let mut daemon = DaemonProcess::spawn(&config_path, &log);
    daemon.web_addr().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(daemon.terminate().await.success());
    let (_, box_) = read_box(&stack, &support, "INBOX").await;
    assert_eq!(box_.len(), 1);
    assert_eq!(quarantine_json(&config_path).len(), 1);
}

/// Deeply nested HTML: the HTML parser's time grows with the square of the
/// depth (about 60 s for 40,000 levels in a debug build).
fn slow_mail(from: &str, to: &str, subject: &str, depth: usize) -> Vec<u8> {
    let html = format!("{}x{}", "<div>".repeat(depth), "</div>".repeat(depth));
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{}@customer.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n",
        unique("slow")
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_that_takes_very_long_does_not_hold_up_the_mails_behind_it() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let customers = backlog::own_customers(&stack, 1).await;
    let slow = slow_mail(
        &customers[0],
        &support,
        &format!("Nested {}", unique("n")),
        40_000,
    );
    let good = Backlog::with_customers(&support, &customers, 5, 100);
    let mut mails = vec![slow];
    mails.extend(good.mails.iter().cloned());
    append_all(&stack, &support, "INBOX", &mails).await;

    let dir = temp_dir();
    let config = Config::new(&stack, &support, dir.path());
    let db = config.db.clone();
    let log = Log::default();
    let mut daemon = DaemonProcess::spawn(&config.write(), &log);
    let started = Instant::now();
    let flowed = within_or_none(20, || async {
        (count_like(&db, &good.run) == 5).then_some(())
    })
    .await;
    // Whatever happens to the slow mail, it is not lost.
    within("the slow mail is stored or quarantined", 240, || async {
        (count(&db, "SELECT count(*) FROM raw_mails") == 6).then_some(())
    })
    .await;
    let stored_all = started.elapsed();
    assert!(daemon.terminate().await.success());
    assert!(
        flowed.is_some(),
        "the 5 mails behind a slow one were not stored within 20 s, only with it after {:?} \
         (rule 1: a mail that cannot be processed never blocks the mails behind it)",
        stored_all
    );
}

fn count_like(db: &Path, marker: &str) -> i64 {
    // replace() rather than instr(): both backends have it.
    test_database(db).count_or_zero(
        "SELECT count(*) FROM tickets WHERE replace(subject, $1, '') <> subject",
        &[&marker],
    )
}

/// Like `within`, but `None` instead of a panic when time runs out.
async fn within_or_none<F, Fut>(secs: u64, mut check: F) -> Option<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await.is_some() {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
