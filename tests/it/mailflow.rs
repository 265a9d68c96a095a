//! The customer → ticket → confirmation loop against the real Dovecot and
//! Postfix: headers read back from the customer's INBOX, the status link
//! fetched, a tagged reply threaded, duplicates and restarts.

use std::time::Duration;

use crate::support::*;
use postdesk::domain::TicketNumber;

const CUSTOMER: &str = "customer1@example.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_mail_becomes_a_ticket_and_a_confirmation() {
    let (stack, support, _dir, daemon) = daemon_on_fresh_box().await;

    let marker = unique("fire");
    let subject = format!("Printer <script>alert(1)</script> {marker}");
    let sent_id = send(
        &stack,
        CUSTOMER,
        &support,
        &subject,
        "It is on fire.\nPlease help.",
    )
    .await;

    let confirmation = wait_for_mail(&stack, CUSTOMER, &marker).await;
    let number = find_ticket_number(&confirmation.subject);
    assert_eq!(
        confirmation.subject,
        format!("[Ticket #{number}] {subject}")
    );
    let from = confirmation.from.clone().expect("a From");
    assert_eq!(from.address, support);
    assert_eq!(from.name.as_deref(), Some("Example Support"));
    assert_eq!(confirmation.in_reply_to, vec![sent_id.clone()]);
    assert!(confirmation.references.contains(&sent_id));
    let own_id = confirmation.message_id.clone().expect("a Message-ID");
    assert!(
        own_id.ends_with("@example.test") && own_id.starts_with("pd."),
        "{own_id}"
    );
    assert_eq!(confirmation.header("auto-submitted"), Some("auto-replied"));
    assert_eq!(confirmation.header("x-auto-response-suppress"), Some("All"));
    assert!(confirmation.text.contains("It is on fire."));

    // The status link, fetched from the daemon's own page.
    let link = status_link(&confirmation.text);
    let token = link.rsplit("/t/").next().expect("a token").trim();
    assert_eq!(
        token.len(),
        postdesk::tokens::LINK_TOKEN_LEN,
        "a link token (its second, 128 random bits): {link}"
    );
    let page = reqwest::get(daemon.url(&format!("/t/{token}")))
        .await
        .expect("the page answers");
    assert_eq!(page.status(), 200);
    let csp = page.headers().get("content-security-policy").cloned();
    let html = page.text().await.expect("a body");
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "escaped subject"
    );
    assert!(!html.contains("<script>"), "no live script on the page");
    assert!(html.contains("It is on fire."));
    assert!(csp.is_some_and(|v| v.to_str().unwrap_or("").contains("default-src 'none'")));
    let other = reqwest::get(daemon.url("/t/0123456789abcdef0123456789abcdef"))
        .await
        .expect("answers");
    assert_eq!(other.status(), 404);
    let healthz = reqwest::get(daemon.url("/healthz")).await.expect("answers");
    assert_eq!(healthz.status(), 200);

    // The support mail is marked seen only after it was stored.
    let support_mails = inbox(&stack, &support).await;
    assert_eq!(support_mails.len(), 1);
    assert!(support_mails[0].1, "the ingested mail is \\Seen");

    // A tagged reply threads onto the ticket and gets no second confirmation.
    let reply_subject = format!("Re: [Ticket #{number}] {subject}");
    let reply_id = send(
        &stack,
        CUSTOMER,
        &support,
        &reply_subject,
        "Still burning.\n\n> It is on fire.",
    )
    .await;
    let store = daemon.store.clone();
    eventually("the reply is on the ticket", || {
        let store = store.clone();
        let reply_id = reply_id.clone();
        async move {
            store
                .ticket_detail(TicketNumber(number))
                .ok()
                .flatten()
                .is_some_and(|t| t.messages.iter().any(|m| m.message_id == reply_id))
        }
    })
    .await;
    let ticket = daemon
        .store
        .ticket_detail(TicketNumber(number))
        .unwrap()
        .unwrap();
    let reply = ticket
        .messages
        .iter()
        .find(|m| m.message_id == reply_id)
        .unwrap();
    assert_eq!(reply.text, "Still burning.", "the quote is stripped");
    assert_eq!(daemon.store.list_tickets(None).unwrap().len(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        mails_with_subject(&stack, CUSTOMER, &marker).await.len(),
        1,
        "one confirmation only"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_message_id_twice_creates_nothing_new() {
    let (stack, support, _dir, daemon) = daemon_on_fresh_box().await;

    let marker = unique("twice");
    let (_, raw) = raw_mail(CUSTOMER, &support, &format!("Twice {marker}"), "Hello", &[]);
    send_raw(&stack, CUSTOMER, &support, &raw).await;
    send_raw(&stack, CUSTOMER, &support, &raw).await;
    let store = daemon.store.clone();
    eventually("both copies are read from the mailbox", || {
        let stack = stack.clone();
        let support = support.clone();
        async move {
            let mails = inbox(&stack, &support).await;
            mails.len() == 2 && mails.iter().all(|(_, seen)| *seen)
        }
    })
    .await;
    let tickets = store.list_tickets(None).unwrap();
    assert_eq!(tickets.len(), 1);
    let ticket = store.ticket_detail(tickets[0].number).unwrap().unwrap();
    let kinds: Vec<&str> = ticket.messages.iter().map(|m| m.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["customer", "confirmation", "notification"],
        "one of each"
    );
    wait_for_mail(&stack, CUSTOMER, &marker).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mails_with_subject(&stack, CUSTOMER, &marker).await.len(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_that_arrives_while_stopped_is_ingested_once_after_restart() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let config = settings(&stack, &support, dir.path());
    let marker = unique("restart");

    let daemon = Daemon::start(config.clone()).await;
    send(
        &stack,
        "customer2@example.test",
        &support,
        &format!("First {marker}"),
        "one",
    )
    .await;
    wait_for_mail(&stack, "customer2@example.test", &format!("First {marker}")).await;
    daemon.stop().await;

    send(
        &stack,
        "customer2@example.test",
        &support,
        &format!("Second {marker}"),
        "two",
    )
    .await;
    send(
        &stack,
        "customer3@example.test",
        &support,
        &format!("Third {marker}"),
        "three",
    )
    .await;
    eventually("both mails reach the support mailbox", || {
        let (stack, support) = (stack.clone(), support.clone());
        async move { inbox(&stack, &support).await.len() == 3 }
    })
    .await;

    let daemon = Daemon::start(config).await;
    wait_for_mail(
        &stack,
        "customer2@example.test",
        &format!("Second {marker}"),
    )
    .await;
    wait_for_mail(&stack, "customer3@example.test", &format!("Third {marker}")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tickets = daemon.store.list_tickets(None).unwrap();
    assert_eq!(tickets.len(), 3, "exactly the new mail was ingested");
    for needle in ["First", "Second"] {
        let got = mails_with_subject(
            &stack,
            "customer2@example.test",
            &format!("{needle} {marker}"),
        )
        .await;
        assert_eq!(got.len(), 1, "one confirmation for {needle}");
    }
    daemon.stop().await;
}

/// IMAP over TLS and authenticated submission both ways (STARTTLS on the
/// submission port, TLS from the first byte on submissions), against a
/// private CA; three mails each, so the second and third go over the
/// connection `outbound::mailer` keeps (TCP_NODELAY, see there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_imap_and_authenticated_submission_work_with_a_private_ca() {
    use postdesk::settings::TlsMode;
    let stack = Stack::from_env();
    for (port, mode) in [
        (stack.submission_port, TlsMode::Starttls),
        (stack.submissions_port, TlsMode::Tls),
    ] {
        let support = fresh_support_box(&stack).await;
        let dir = temp_dir();
        let mut config = settings(&stack, &support, dir.path());
        config.imap.port = stack.imaps_port;
        config.imap.tls = TlsMode::Tls;
        config.imap.ca_file = stack.ca_file.clone();
        config.smtp.port = port;
        config.smtp.tls = mode;
        config.smtp.ca_file = stack.ca_file.clone();
        config.smtp.username = support.clone();
        config.smtp.password = postdesk::settings::Secret::new(stack.password.clone());
        let daemon = Daemon::start(config).await;
        let markers: Vec<String> = (0..3).map(|i| unique(&format!("tls{i}"))).collect();
        for marker in &markers {
            send(
                &stack,
                "customer4@example.test",
                &support,
                &format!("Over TLS {marker}"),
                "hi",
            )
            .await;
        }
        for marker in &markers {
            let confirmation = wait_for_mail(&stack, "customer4@example.test", marker).await;
            assert!(
                confirmation.subject.starts_with("[Ticket #"),
                "{mode:?}: {}",
                confirmation.subject
            );
        }
        daemon.stop().await;
    }
}

fn find_ticket_number(subject: &str) -> i64 {
    let start = subject.find("[Ticket #").expect("a tag") + "[Ticket #".len();
    subject[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .expect("a number")
}

fn status_link(text: &str) -> String {
    text.lines()
        .find(|l| l.contains("/t/"))
        .expect("a status link in the confirmation")
        .trim()
        .to_string()
}

#[test]
fn the_daemon_exits_0_within_5_s_of_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let stack = Stack::from_env();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let support = runtime.block_on(fresh_support_box(&stack));
    let dir = temp_dir();
    let config = dir.path().join("postdesk.toml");
    std::fs::write(
        &config,
        format!(
            "[support]\naddress = \"{support}\"\n\
             [imap]\nhost = \"{host}\"\nport = {imap}\ntls = \"none\"\nusername = \"{support}\"\npassword = \"{pw}\"\n\
             [smtp]\nhost = \"{host}\"\nport = {smtp}\ntls = \"none\"\n\
             [database]\n{db}[web]\nlisten = \"127.0.0.1:0\"\n",
            host = stack.host,
            imap = stack.imap_port,
            smtp = stack.smtp_port,
            pw = stack.password,
            db = crate::support::test_database(&dir.path().join("p.db")).toml(),
        ),
    )
    .expect("a config file");
    let mut child = Command::new(binary())
        .args(["run", "--config", config.to_str().expect("utf-8")])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("postdesk starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let started = Instant::now();
    // Running once the IMAP session is up (or at least the page listens).
    for line in lines.by_ref() {
        let line = line.expect("a log line");
        if line.contains("postdesk is running") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the daemon did not start"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let stop = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("the daemon exits");
    assert!(
        stop.elapsed() < Duration::from_secs(5),
        "stopped in {:?}",
        stop.elapsed()
    );
    assert_eq!(status.code(), Some(0), "exit 0 after SIGTERM");
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "{rest:?}"
    );
}
