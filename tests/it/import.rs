//! `postdesk import` on the real Dovecot (issue 12 §4): the read mail
//! already in the support box comes in as history (threaded, dated by
//! itself, tickets closed, nothing sent, nothing changed on the server),
//! the unread mail is left to the daemon's first start, which confirms it;
//! a second run stores nothing twice; `--since` takes only the later mail.

use postdesk::domain::Status;

use crate::support::{
    Daemon, Stack, append, fresh_support_box, inbox, run_cli, settings, temp_dir, unique,
    wait_for_mail, written,
};

/// The environment for the command line on `support`'s mailbox.
fn env(stack: &Stack, support: &str) -> Vec<(String, String)> {
    [
        ("SUPPORT__ADDRESS", support.to_string()),
        ("SUPPORT__AGENTS", "agent@example.test".to_string()),
        ("IMAP__HOST", stack.host.clone()),
        ("IMAP__PORT", stack.imap_port.to_string()),
        ("IMAP__TLS", "none".to_string()),
        ("IMAP__USERNAME", support.to_string()),
        ("IMAP__PASSWORD", stack.password.clone()),
        ("IMAP__TIMEOUT_SECONDS", "10".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("POSTDESK__{k}"), v))
    .collect()
}

fn import(db: &std::path::Path, env: &[(String, String)], extra: &[&str]) -> String {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut args = vec!["import"];
    args.extend_from_slice(extra);
    let out = run_cli(db, &env, &args, None);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "import failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_brings_old_mail_in_as_closed_history_and_sends_nothing() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let (old_customer, recent_customer) = (
        fresh_support_box(&stack).await,
        fresh_support_box(&stack).await,
    );
    let marker = unique("import");
    let days = chrono::Duration::days;
    let first = written(
        &old_customer,
        &support,
        &format!("Printer {marker}"),
        days(400),
    );
    let (reply_id, reply) = {
        let (id, raw) = written(
            &old_customer,
            &support,
            &format!("Re: Printer {marker}"),
            days(399),
        );
        let text = String::from_utf8(raw).expect("ASCII mail");
        let threaded = text.replacen(
            "\r\n\r\n",
            &format!("\r\nIn-Reply-To: <{}>\r\n\r\n", first.0),
            1,
        );
        (id, threaded.into_bytes())
    };
    let unread = written(
        &recent_customer,
        &support,
        &format!("Invoice {marker}"),
        chrono::Duration::minutes(10),
    );
    append(
        &stack,
        &support,
        &[(&first.1, true), (&reply, true), (&unread.1, false)],
    )
    .await;
    let flags_before: Vec<bool> = inbox(&stack, &support).await.iter().map(|m| m.1).collect();

    let dir = temp_dir();
    let db = dir.path().join("postdesk.db");
    let env = env(&stack, &support);
    let said = import(&db, &env, &[]);
    assert!(
        said.contains("3 mails in INBOX, 2 of them history"),
        "{said}"
    );
    assert!(
        said.contains("1 new tickets (closed), 1 added to tickets"),
        "{said}"
    );
    assert!(said.contains("1 left to the daemon"), "{said}");

    let store = crate::support::open_store(&db);
    let explain = |id: &str| store.explain(id).expect("explain reads");
    let old_ticket = explain(&first.0).expect("the read mail is history").ticket;
    assert_eq!(
        explain(&reply_id).expect("stored").ticket,
        old_ticket,
        "the reply threads"
    );
    assert!(
        explain(&unread.0).is_none(),
        "an unread mail is the daemon's, not history"
    );
    let detail = store.ticket_detail(old_ticket).unwrap().unwrap();
    assert_eq!(detail.summary.status, Status::Closed);
    assert!(detail.messages.iter().all(|m| m.direction == "in"));
    let year_ago = chrono::Utc::now() - days(390);
    assert!(
        detail.summary.created_at < year_ago,
        "dated by the mail: {}",
        detail.summary.created_at
    );
    let outbox = crate::support::test_database(&db).scalar_i64("SELECT count(*) FROM outbox", &[]);
    assert_eq!(outbox, 0, "the import queued mail");
    drop(store);

    // The first start takes the unread mail as usual: an open ticket, its
    // sender confirmed; the history sends nothing even with a sender running.
    let daemon = Daemon::start(settings(&stack, &support, dir.path())).await;
    wait_for_mail(&stack, &recent_customer, &format!("Invoice {marker}")).await;
    let fresh = daemon
        .store
        .explain(&unread.0)
        .unwrap()
        .expect("taken live");
    let live = daemon.store.ticket_detail(fresh.ticket).unwrap().unwrap();
    assert_eq!(live.summary.status, Status::New);
    daemon.stop().await;
    assert!(
        inbox(&stack, &old_customer).await.is_empty(),
        "the history's customer got mail"
    );
    let flags_after: Vec<bool> = inbox(&stack, &support).await.iter().map(|m| m.1).collect();
    assert_eq!(flags_after, vec![true, true, true], "only the daemon marks");
    assert_eq!(flags_before, vec![true, true, false]);

    // After the first start: everything at or below the checkpoint is
    // known, so a second import stores nothing twice.
    let again = import(&db, &env, &[]);
    assert!(again.contains("3 of them history"), "{again}");
    assert!(again.contains("3 already stored"), "{again}");

    // --since: only what arrived on or after that day (APPEND made them all
    // today, so a future day finds none); a bad day is refused.
    let fresh = temp_dir();
    let fresh_db = fresh.path().join("postdesk.db");
    let tomorrow = (chrono::Utc::now() + days(1))
        .format("%Y-%m-%d")
        .to_string();
    let none = import(&fresh_db, &env, &["--since", &tomorrow]);
    assert!(none.contains("0 mails in INBOX"), "{none}");
    let bad = run_cli(&fresh_db, &[], &["import", "--since", "last week"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
}
