//! Failed mail and our own login (issue 13 §3), against the real Postfix:
//! a refused SMTP login (535) keeps the mail pending, uncounted, and says
//! so on `/healthz` and `/metrics` until the password is fixed, then the
//! same mail (same Message-ID) goes out; a permanent refusal of the mail
//! itself (554 relay denied) fails it, `outbox list --failed` shows it and
//! `outbox retry ID` queues the very same bytes again. With two queues on
//! two SMTP accounts, a refused login on one holds only that queue's mail:
//! the other's goes out at once, and `/healthz`, `/metrics` and `outbox
//! list` name the refused queue and its own settings keys.

use std::time::Duration;

use axum::http::StatusCode;

use postdesk::settings::{Secret, Settings, TlsMode};
use postdesk::store::{OutboxEntry, Store};

use crate::support::{
    Daemon, Stack, eventually, fresh_support_box, mails_with_subject, run_cli, send, send_raw,
    settings, temp_dir, test_database, unique, wait_for_mail,
};

const KEY: &str = "outbox-test-agent-key-0123456789";

/// The confirmation whose subject contains `marker`, if there is one yet
/// (the agents' notification has the same subject).
fn row(store: &Store, marker: &str) -> Option<OutboxEntry> {
    let (entries, _) = store.outbox_list(false, 100).expect("the outbox reads");
    entries
        .into_iter()
        .find(|e| e.kind == "confirmation" && e.subject.contains(marker))
}

/// The bytes stored for outbox row `id`, read straight from the database.
fn stored_bytes(db: &std::path::Path, id: i64) -> Vec<u8> {
    let db = test_database(db);
    db.scalar("SELECT raw FROM outbox WHERE id = $1", &[&id])
        .bytes()
}

async fn fetch(url: &str, bearer: Option<&str>) -> (StatusCode, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let mut request = client.get(url);
    if let Some(key) = bearer {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("the daemon answers");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
    (status, response.text().await.expect("a body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_keeps_mail_pending_until_the_password_is_fixed() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let mut config = settings(&stack, &support, dir.path());
    config.smtp.port = stack.submission_port;
    config.smtp.tls = TlsMode::Starttls;
    config.smtp.ca_file = stack.ca_file.clone();
    config.smtp.username = support.clone();
    config.smtp.password = Secret::new("not-the-password");
    config.web.agent_token = Secret::new(KEY);
    let daemon = Daemon::start(config.clone()).await;
    let marker = unique("login");
    send(
        &stack,
        "customer5@example.test",
        &support,
        &format!("Login {marker}"),
        "hi",
    )
    .await;

    let store = daemon.store.clone();
    eventually("the refused login is recorded on the mail", || {
        let refused = row(&store, &marker)
            .and_then(|e| e.last_error)
            .is_some_and(|e| e.contains("535"));
        async move { refused }
    })
    .await;
    let waiting = row(&store, &marker).expect("the confirmation's row");
    assert_eq!(waiting.status, "pending", "our fault, not the mail's");
    assert_eq!(waiting.attempts, 0, "no attempt counted");
    let failures = store.smtp_auth_failures().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].error.contains("535"), "{failures:?}");
    assert_eq!(failures[0].hint, "smtp.username and smtp.password");

    let (status, body) = fetch(&daemon.url("/healthz"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["smtp"]["auth_failing"], true, "{body}");
    assert_eq!(
        health["smtp"]["auth_failing_queues"][0], "support",
        "{body}"
    );
    let (_, metrics) = fetch(&daemon.url("/metrics"), Some(KEY)).await;
    assert!(
        metrics.contains("\npostdesk_smtp_auth_failing{queue=\"support\"} 1\n"),
        "{metrics}"
    );
    let before = stored_bytes(&config.database.path, waiting.id);
    daemon.stop().await;

    // The operator fixes the password and restarts.
    config.smtp.password = Secret::new(stack.password.clone());
    let daemon = Daemon::start(config.clone()).await;
    let confirmation = wait_for_mail(&stack, "customer5@example.test", &marker).await;
    assert_eq!(
        confirmation.message_id.as_deref(),
        Some(waiting.message_id.as_str()),
        "the same mail"
    );
    let sent = row(&daemon.store, &marker).expect("the row");
    assert_eq!((sent.status.as_str(), sent.attempts), ("sent", 1));
    assert_eq!(stored_bytes(&config.database.path, sent.id), before);
    eventually("the login is known to work again", || {
        let store = daemon.store.clone();
        async move { store.smtp_auth_failures().unwrap().is_empty() }
    })
    .await;
    let (status, body) = fetch(&daemon.url("/healthz"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, metrics) = fetch(&daemon.url("/metrics"), Some(KEY)).await;
    assert!(
        metrics.contains("\npostdesk_smtp_auth_failing{queue=\"support\"} 0\n"),
        "{metrics}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_fails_the_mail_and_retry_queues_the_same_bytes() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let config = settings(&stack, &support, dir.path());
    let db = config.database.path.clone();
    let daemon = Daemon::start(config).await;
    // Postfix relays nothing to other domains: our confirmation to this
    // customer is refused for good (554 5.7.1 Relay access denied).
    let marker = unique("relay");
    let customer = "someone@outside.test";
    let raw = format!(
        "From: Someone <{customer}>\r\nTo: {support}\r\nSubject: Far away {marker}\r\n\
         Message-ID: <{marker}@outside.test>\r\n\r\nHello from outside.\r\n"
    );
    send_raw(&stack, customer, &support, raw.as_bytes()).await;
    let store = daemon.store.clone();
    eventually("the confirmation has failed", || {
        let failed = row(&store, &marker).is_some_and(|e| e.status == "failed");
        async move { failed }
    })
    .await;
    let failed = row(&store, &marker).expect("the row");
    let error = failed.last_error.clone().unwrap_or_default();
    assert!(error.contains("554"), "{error}");
    assert_eq!(failed.attempts, 1, "a permanent refusal is not retried");
    assert!(
        store.smtp_auth_failures().unwrap().is_empty(),
        "not a login fault"
    );
    daemon.stop().await;
    let before = stored_bytes(&db, failed.id);

    let cli = |args: &[&str]| run_cli(&db, &[], args, None);
    let out = cli(&["outbox", "list", "--failed", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], failed.id);
    assert_eq!(listed[0]["recipients"], serde_json::json!([customer]));
    assert_eq!(listed[0]["ticket"], 1);
    assert!(
        listed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("Relay access denied")
    );
    let out = cli(&["outbox", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{}\tfailed\t#1\t{customer}", failed.id)),
        "{text}"
    );

    let id = failed.id.to_string();
    let out = cli(&["outbox", "retry", &id]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("queued again") && said.contains(&failed.message_id),
        "{said}"
    );
    let row = test_database(&db).rows(
        "SELECT status, attempts FROM outbox WHERE id = $1",
        &[&failed.id],
    );
    let (status, attempts) = (row[0][0].text(), row[0][1].int());
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    let after = stored_bytes(&db, failed.id);
    assert_eq!(after, before, "the very same bytes");
    let header = format!("Message-ID: <{}>", failed.message_id);
    assert!(String::from_utf8_lossy(&after).contains(&header));

    let again = cli(&["outbox", "retry", &id]);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already pending"));
    let none = cli(&["outbox", "retry", "99999"]);
    assert_eq!(none.status.code(), Some(1));
    let all = cli(&["outbox", "retry", "--all-failed"]);
    assert!(String::from_utf8_lossy(&all.stdout).contains("no failed mail"));
    let neither = cli(&["outbox", "retry"]);
    assert_eq!(neither.status.code(), Some(2), "an ID or --all-failed");
}

/// The test settings on `support` (plain SMTP, no login) with `billing` as
/// a second queue on an SMTP account of its own (submission, STARTTLS,
/// logging in as `billing` with `smtp_password`).
fn billing_on_its_own_account(
    stack: &Stack,
    support: &str,
    billing: &str,
    smtp_password: &str,
    dir: &std::path::Path,
) -> Settings {
    let mut env: Vec<(String, String)> = [
        ("QUEUE", "billing".to_string()),
        ("ADDRESS", billing.to_string()),
        ("AGENTS", "agent2@example.test".to_string()),
        ("IMAP__USERNAME", billing.to_string()),
        ("IMAP__PASSWORD", stack.password.clone()),
        ("SMTP__PORT", stack.submission_port.to_string()),
        ("SMTP__TLS", "starttls".to_string()),
        ("SMTP__CA_FILE", stack.ca_file.clone()),
        ("SMTP__USERNAME", billing.to_string()),
        ("SMTP__PASSWORD", smtp_password.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("POSTDESK__MAILBOX__0__{k}"), v))
    .collect();
    env.push(("POSTDESK__WEB__AGENT_TOKEN".into(), KEY.into()));
    let db = dir.join("postdesk.db");
    let pairs = [
        ("SUPPORT__ADDRESS", support.to_string()),
        ("SUPPORT__AGENTS", "agent@example.test".to_string()),
        ("SUPPORT__PUBLIC_URL", "http://127.0.0.1:8025".to_string()),
        ("IMAP__HOST", stack.host.clone()),
        ("IMAP__PORT", stack.imap_port.to_string()),
        ("IMAP__TLS", "none".to_string()),
        ("IMAP__USERNAME", support.to_string()),
        ("IMAP__PASSWORD", stack.password.clone()),
        ("IMAP__POLL_SECONDS", "1".to_string()),
        ("SMTP__HOST", stack.host.clone()),
        ("SMTP__PORT", stack.smtp_port.to_string()),
        ("SMTP__TLS", "none".to_string()),
        ("WEB__LISTEN", "127.0.0.1:0".to_string()),
    ];
    env.extend(pairs.map(|(k, v)| (format!("POSTDESK__{k}"), v)));
    env.extend(test_database(&db).process_env());
    Settings::load_with_env(None, env).expect("two queues on two accounts are valid")
}

/// The status and attempts of every outbox row whose subject has `marker`.
fn rows(store: &Store, marker: &str) -> Vec<OutboxEntry> {
    let (entries, _) = store.outbox_list(false, 100).expect("the outbox reads");
    entries
        .into_iter()
        .filter(|e| e.subject.contains(marker))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_on_one_queue_holds_only_that_queues_mail() {
    let stack = Stack::from_env();
    let (support, billing) = (
        fresh_support_box(&stack).await,
        fresh_support_box(&stack).await,
    );
    let dir = temp_dir();
    let config = billing_on_its_own_account(&stack, &support, &billing, "WRONG", dir.path());
    let db = config.database.path.clone();
    let daemon = Daemon::start(config).await;
    let store = daemon.store.clone();

    // Billing's mail is queued first: its rows have the lowest ids.
    let invoice = unique("invoice");
    send(
        &stack,
        "customer5@example.test",
        &billing,
        &invoice,
        "Twice?",
    )
    .await;
    eventually("billing's refused login is recorded on its mail", || {
        let refused = row(&store, &invoice)
            .and_then(|e| e.last_error)
            .is_some_and(|e| e.contains("535"));
        async move { refused }
    })
    .await;
    let help = unique("help");
    send(&stack, "customer5@example.test", &support, &help, "Jammed.").await;

    // Support's route logs in fine: its mail goes out at once.
    let confirmation = wait_for_mail(&stack, "customer5@example.test", &help).await;
    assert_eq!(confirmation.from.expect("a From").address.as_str(), support);
    wait_for_mail(&stack, "agent@example.test", &help).await;
    eventually("support's rows are recorded as sent", || {
        let sent = rows(&store, &help).iter().all(|e| e.status == "sent");
        async move { sent }
    })
    .await;
    let held = rows(&store, &invoice);
    assert_eq!(held.len(), 2, "a confirmation and a notification: {held:?}");
    for entry in &held {
        assert_eq!(entry.status, "pending", "{entry:?}");
        assert_eq!(entry.attempts, 0, "no attempt counted: {entry:?}");
    }
    assert!(
        held.iter()
            .any(|e| e.held_for.as_deref() == Some("billing")),
        "{held:?}"
    );
    assert!(
        mails_with_subject(&stack, "customer5@example.test", &invoice)
            .await
            .is_empty()
    );
    // Support's mail going out did not clear billing's refusal.
    let failures = store.smtp_auth_failures().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(
        (failures[0].route.as_str(), &failures[0].queues[..]),
        ("billing", &["billing".to_string()][..])
    );

    let (status, body) = fetch(&daemon.url("/healthz"), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health["smtp"]["auth_failing_queues"],
        serde_json::json!(["billing"]),
        "{body}"
    );
    let (_, metrics) = fetch(&daemon.url("/metrics"), Some(KEY)).await;
    assert!(
        metrics.contains("\npostdesk_smtp_auth_failing{queue=\"billing\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\npostdesk_smtp_auth_failing{queue=\"support\"} 0\n"),
        "{metrics}"
    );
    daemon.stop().await;

    let out = run_cli(&db, &[], &["outbox", "list"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("login for queue billing since"),
        "{warning}"
    );
    assert!(
        warning.contains("fix mailbox[0].smtp.username and mailbox[0].smtp.password"),
        "{warning}"
    );
    assert!(!warning.contains("[smtp]"), "{warning}");

    // The operator fixes billing's password and restarts: its held mail
    // goes out at once, the very same rows.
    let config =
        billing_on_its_own_account(&stack, &support, &billing, &stack.password, dir.path());
    let daemon = Daemon::start(config).await;
    wait_for_mail(&stack, "customer5@example.test", &invoice).await;
    let store = daemon.store.clone();
    eventually("billing's rows are sent and its refusal cleared", || {
        let sent = rows(&store, &invoice)
            .iter()
            .all(|e| e.status == "sent" && e.attempts == 1);
        let cleared = store.smtp_auth_failures().unwrap().is_empty();
        async move { sent && cleared }
    })
    .await;
    daemon.stop().await;
}

/// A claim whose answer the sender never saw (PostgreSQL can end the
/// connection after it committed the COMMIT: a CI run lost 20 mails so)
/// leaves rows `sending` for a live daemon. Shown on SQLite, where the
/// failed claim can be made exact (not PostgreSQL's cut-off COMMIT itself):
/// once the sender has sent a first mail, another connection holds the
/// write lock for 10 s (the daemon's claims fail after their 5 s busy
/// timeout) and, inside that lock, adds two rows marked `sending` as such
/// a claim leaves them, the second one also named in the sent journal (as
/// a mail the server accepted before the database failed). Once the lock
/// is gone the sender settles before it claims again: the first goes out
/// once, the second is recorded sent and never goes out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_left_sending_by_a_claim_that_failed_go_out_once_the_database_answers() {
    if std::env::var("POSTDESK_TEST_POSTGRES").is_ok_and(|u| !u.trim().is_empty()) {
        eprintln!("SQLite only: its write lock makes the failed claim exact");
        return;
    }
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let daemon = Daemon::start(settings(&stack, &support, dir.path())).await;
    let customer = fresh_support_box(&stack).await;
    // The sender runs (its start's settling is over) once a mail went out.
    let warm_up = unique("warm-up");
    send(&stack, &customer, &support, &warm_up, "Hello?").await;
    wait_for_mail(&stack, &customer, &warm_up).await;

    let (lost, journaled) = (unique("lost-claim"), unique("journaled"));
    let db = dir.path().join("postdesk.db");
    let (db_path, from, to) = (db.clone(), support.clone(), customer.clone());
    let subjects = [lost.clone(), journaled.clone()];
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&db_path).expect("open the database");
        conn.execute_batch("BEGIN EXCLUSIVE")
            .expect("the write lock");
        let now = chrono::Utc::now();
        for subject in &subjects {
            let raw = format!(
                "From: Example Support <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\n\
                 Message-ID: <{subject}@example.test>\r\n\
                 Date: Sat, 05 Dec 2026 23:00:00 +0000\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n"
            );
            conn.execute(
                "INSERT INTO outbox (message_id, kind, envelope_from, recipients, raw, automatic,
                   status, next_attempt_at, created_at)
                 VALUES (?1, 'status', ?2, ?3, ?4, 0, 'sending', ?5, ?5)",
                rusqlite::params![
                    format!("{subject}@example.test"),
                    from,
                    to,
                    raw.as_bytes(),
                    now
                ],
            )
            .expect("the row a lost claim leaves");
        }
        let mut journal = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(db_path.with_file_name("postdesk.db.sent"))
            .expect("the sent journal");
        std::io::Write::write_all(
            &mut journal,
            format!("{}@example.test\n", subjects[1]).as_bytes(),
        )
        .expect("a journal line");
        std::thread::sleep(Duration::from_secs(10));
        conn.execute_batch("COMMIT").expect("commit");
    })
    .await
    .expect("the locking thread");

    wait_for_mail(&stack, &customer, &lost).await;
    let db = test_database(&db);
    eventually("both rows are recorded sent", || {
        let sent = db.scalar_i64(
            "SELECT count(*) FROM outbox WHERE status = 'sent' AND kind = 'status'",
            &[],
        );
        async move { sent == 2 }
    })
    .await;
    // Room for a repeat to arrive, so it would be counted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mails_with_subject(&stack, &customer, &lost).await.len(), 1);
    assert!(
        mails_with_subject(&stack, &customer, &journaled)
            .await
            .is_empty(),
        "a mail the journal names as accepted went out again"
    );
    daemon.stop().await;
}
