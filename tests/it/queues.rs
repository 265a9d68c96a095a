//! Several support addresses (issue 12 §1), against the real stack: two
//! mailboxes, each a queue; mail to each lands in its queue, is confirmed
//! From that queue's address and name, and notifies that queue's agents
//! only; a wrong password on one mailbox leaves the other running while
//! `/healthz` and `/metrics` name the one that is down. Without the stack:
//! an agent of one queue cannot act on another queue's ticket, and a
//! follow-up stays in its ticket's queue.

use std::time::Duration;

use chrono::Utc;

use crate::support::*;
use postdesk::ingest::Pipeline;
use postdesk::settings::Settings;
use postdesk::store::{IngestReport, MailSource, Store};
use postdesk::tokens::Purpose;

const AGENT: &str = "agent@example.test";
const BILLING_AGENT: &str = "agent2@example.test";
const AGENT_TOKEN: &str = "0123456789abcdef0123";

/// The test settings on `support`, with `billing` as a second mailbox of
/// its own agent, read with `billing_password`.
fn two_queues(
    stack: &Stack,
    support: &str,
    billing: &str,
    billing_password: &str,
    dir: &std::path::Path,
) -> Settings {
    let env = [
        ("SUPPORT__ADDRESS", support.to_string()),
        ("SUPPORT__NAME", "Example Support".to_string()),
        ("SUPPORT__AGENTS", AGENT.to_string()),
        ("SUPPORT__PUBLIC_URL", "http://127.0.0.1:8025".to_string()),
        ("IMAP__HOST", stack.host.clone()),
        ("IMAP__PORT", stack.imap_port.to_string()),
        ("IMAP__TLS", "none".to_string()),
        ("IMAP__USERNAME", support.to_string()),
        ("IMAP__PASSWORD", stack.password.clone()),
        ("IMAP__POLL_SECONDS", "1".to_string()),
        ("IMAP__TIMEOUT_SECONDS", "10".to_string()),
        ("SMTP__HOST", stack.host.clone()),
        ("SMTP__PORT", stack.smtp_port.to_string()),
        ("SMTP__TLS", "none".to_string()),
        ("WEB__LISTEN", "127.0.0.1:0".to_string()),
        ("WEB__AGENT_TOKEN", AGENT_TOKEN.to_string()),
        ("MAILBOX__0__QUEUE", "billing".to_string()),
        ("MAILBOX__0__ADDRESS", billing.to_string()),
        ("MAILBOX__0__NAME", "Example Billing".to_string()),
        ("MAILBOX__0__AGENTS", BILLING_AGENT.to_string()),
        ("MAILBOX__0__IMAP__USERNAME", billing.to_string()),
        ("MAILBOX__0__IMAP__PASSWORD", billing_password.to_string()),
    ];
    let env = env
        .into_iter()
        .chain(test_database(&dir.join("postdesk.db")).env())
        .map(|(k, v)| (format!("POSTDESK__{k}"), v))
        .collect();
    Settings::load_with_env(None, env).expect("two queues are valid settings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_to_each_address_lands_in_its_queue_and_goes_out_from_it() {
    let stack = Stack::from_env();
    let (support, billing) = (
        fresh_support_box(&stack).await,
        fresh_support_box(&stack).await,
    );
    let dir = temp_dir();
    let daemon = Daemon::start(two_queues(
        &stack,
        &support,
        &billing,
        &stack.password,
        dir.path(),
    ))
    .await;
    let (help, invoice) = (unique("Help"), unique("Invoice"));
    send(
        &stack,
        "customer2@example.test",
        &support,
        &help,
        "The printer jams.",
    )
    .await;
    send(
        &stack,
        "customer2@example.test",
        &billing,
        &invoice,
        "I was billed twice.",
    )
    .await;

    let to_help = wait_for_mail(&stack, "customer2@example.test", &help).await;
    let to_invoice = wait_for_mail(&stack, "customer2@example.test", &invoice).await;
    let from = |m: &postdesk::ingest::parse::ParsedMail| m.from.clone().expect("a From");
    assert_eq!(from(&to_help).address.as_str(), support);
    assert_eq!(from(&to_help).name.as_deref(), Some("Example Support"));
    assert_eq!(from(&to_invoice).address.as_str(), billing);
    assert_eq!(from(&to_invoice).name.as_deref(), Some("Example Billing"));
    // Our Message-IDs stay in the queue address's domain.
    let id = to_invoice.message_id.clone().expect("a Message-ID");
    assert!(id.ends_with("@example.test"), "{id}");

    // Each queue's agents are told of its tickets, and only of those.
    wait_for_mail(&stack, BILLING_AGENT, &invoice).await;
    wait_for_mail(&stack, AGENT, &help).await;
    assert!(mails_with_subject(&stack, AGENT, &invoice).await.is_empty());
    assert!(
        mails_with_subject(&stack, BILLING_AGENT, &help)
            .await
            .is_empty()
    );

    let billing_tickets = daemon.store.list_tickets_in(None, Some("billing")).unwrap();
    assert_eq!(billing_tickets.len(), 1, "{billing_tickets:?}");
    assert!(billing_tickets[0].subject.contains(&invoice));
    let support_tickets = daemon.store.list_tickets_in(None, Some("support")).unwrap();
    assert!(
        support_tickets
            .iter()
            .all(|t| !t.subject.contains(&invoice))
    );
    assert!(support_tickets.iter().any(|t| t.subject.contains(&help)));

    // The agents' page filters by queue; the customer's page names the queue.
    let client = reqwest::Client::new();
    let page = client
        .get(daemon.url("/agent?queue=billing"))
        .bearer_auth(AGENT_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&invoice) && !page.contains(&help), "{page}");
    let link = to_invoice
        .text
        .split_whitespace()
        .find_map(|w| {
            w.split_once("127.0.0.1:8025/t/")
                .map(|(_, token)| token.to_string())
        })
        .expect("a status link in the confirmation");
    let page = client
        .get(daemon.url(&format!("/t/{link}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Example Billing"), "{page}");
    assert!(!page.contains("Example Support"), "{page}");
    daemon.stop().await;

    // `tickets list --queue billing --json` from the command line.
    let db = dir.path().join("postdesk.db");
    let env = [
        ("POSTDESK__MAILBOX__0__QUEUE", "billing"),
        ("POSTDESK__MAILBOX__0__ADDRESS", billing.as_str()),
        ("POSTDESK__MAILBOX__0__IMAP__USERNAME", billing.as_str()),
    ];
    let out = run_cli(
        &db,
        &env,
        &["tickets", "list", "--queue", "billing", "--json"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["queue"], "billing");
    let out = run_cli(&db, &env, &["tickets", "list", "--queue", "sales"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("billing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_on_one_mailbox_leaves_the_other_running() {
    let stack = Stack::from_env();
    let (support, billing) = (
        fresh_support_box(&stack).await,
        fresh_support_box(&stack).await,
    );
    let dir = temp_dir();
    let settings = two_queues(&stack, &support, &billing, "not-the-password", dir.path());
    let daemon = Daemon::start(settings).await;
    let marker = unique("Still");
    send(
        &stack,
        "customer3@example.test",
        &support,
        &marker,
        "Hello?",
    )
    .await;
    wait_for_mail(&stack, "customer3@example.test", &marker).await;

    let client = reqwest::Client::new();
    let health = client
        .get(daemon.url("/healthz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let mailboxes = health["mailboxes"].as_array().expect("mailboxes").clone();
    assert_eq!(mailboxes[0]["queue"], "support");
    assert_eq!(mailboxes[0]["connected"], true, "{health}");
    assert_eq!(mailboxes[1]["queue"], "billing");
    assert_eq!(mailboxes[1]["connected"], false, "{health}");
    let metrics = client
        .get(daemon.url("/metrics"))
        .bearer_auth(AGENT_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("postdesk_imap_connected{queue=\"support\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postdesk_imap_connected{queue=\"billing\"} 0\n"),
        "{metrics}"
    );
    // The mail waiting in the failing mailbox is untouched, not lost.
    send(
        &stack,
        "customer3@example.test",
        &billing,
        &unique("Waiting"),
        "Later.",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        daemon
            .store
            .list_tickets_in(None, Some("billing"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(inbox(&stack, &billing).await.len(), 1);
    daemon.stop().await;
}

/// Two queues on a store of their own, no mail stack: (store, pipeline).
fn offline(dir: &std::path::Path) -> (Store, Pipeline) {
    let env = [
        ("SUPPORT__ADDRESS", "help@shop.test"),
        ("SUPPORT__AGENTS", AGENT),
        ("MAILBOX__0__QUEUE", "billing"),
        ("MAILBOX__0__ADDRESS", "billing@shop.test"),
        ("MAILBOX__0__NAME", "Shop Billing"),
        ("MAILBOX__0__AGENTS", BILLING_AGENT),
        ("MAILBOX__0__IMAP__USERNAME", "billing@shop.test"),
    ];
    let env = env
        .into_iter()
        .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string()))
        .collect();
    let settings = Settings::load_with_env(None, env).unwrap();
    let store = open_store(&dir.join("q.db"));
    (
        store,
        Pipeline::new(&settings, "a-secret-long-enough-for-tests"),
    )
}

fn ingest(store: &Store, pipeline: &Pipeline, raw: &[u8], source: &MailSource) -> IngestReport {
    store
        .ingest_mail(pipeline, raw.to_vec(), source, Utc::now())
        .unwrap()
}

#[test]
fn an_agent_of_another_queue_cannot_act_on_its_tickets() {
    let dir = temp_dir();
    let (store, pipeline) = offline(dir.path());
    let (_, raw) = raw_mail(
        "ann@customer.test",
        "billing@shop.test",
        "Refund",
        "Please.",
        &[],
    );
    let IngestReport::NewTicket { number, .. } = ingest(&store, &pipeline, &raw, &MailSource::Pipe)
    else {
        panic!("a new ticket");
    };
    // The support queue's agent answers with a token signed for them.
    let raw = agent_reply(&pipeline, number, AGENT, "#close\r\nNo refund for you.");
    ingest(&store, &pipeline, &raw, &MailSource::Pipe);
    let detail = store.ticket_detail(number).unwrap().unwrap();
    assert_eq!(detail.summary.queue, "billing");
    assert_eq!(detail.summary.status.as_str(), "new", "nothing applied");
    let deliveries = store.deliveries().unwrap();
    assert!(
        deliveries
            .iter()
            .all(|d| !d.recipients.iter().any(|r| r == "ann@customer.test")
                || d.kind == "confirmation"),
        "nothing relayed to the customer: {deliveries:?}"
    );
    assert!(
        // The support agent gets no notification of billing's tickets:
        // a mail to them is the answer that says why nothing was applied.
        deliveries
            .iter()
            .any(|d| d.recipients.iter().any(|r| r == AGENT)),
        "the agent is told why: {deliveries:?}"
    );
    // The billing agent's own command works.
    let raw = agent_reply(
        &pipeline,
        number,
        BILLING_AGENT,
        "#pending\r\nWe are checking.",
    );
    ingest(&store, &pipeline, &raw, &MailSource::Pipe);
    let detail = store.ticket_detail(number).unwrap().unwrap();
    assert_eq!(detail.summary.status.as_str(), "pending");
}

/// `agent`'s answer to the notification of billing ticket `number`, with
/// the token signed for them.
fn agent_reply(
    pipeline: &Pipeline,
    number: postdesk::domain::TicketNumber,
    agent: &str,
    body: &str,
) -> Vec<u8> {
    let token = pipeline
        .message_id(number, Purpose::Notification, Some(agent))
        .unwrap();
    let reply = format!("<{token}>");
    let (_, raw) = raw_mail(
        agent,
        "billing@shop.test",
        &format!("Re: [Ticket #{number}] Refund"),
        body,
        &[("In-Reply-To", &reply), ("References", &reply)],
    );
    raw
}

#[test]
fn a_follow_up_stays_in_its_tickets_queue_and_the_source_decides_otherwise() {
    let dir = temp_dir();
    let (store, pipeline) = offline(dir.path());
    // To an alias that is no queue's address, read from billing's mailbox.
    let (id, raw) = raw_mail(
        "bob@customer.test",
        "accounts@shop.test",
        "Invoice 7",
        "Hi.",
        &[],
    );
    let source = MailSource::imap("billing@shop.test", "INBOX", 1, 1);
    let IngestReport::NewTicket { number, .. } = ingest(&store, &pipeline, &raw, &source) else {
        panic!("a new ticket");
    };
    assert_eq!(
        store.ticket_detail(number).unwrap().unwrap().summary.queue,
        "billing"
    );
    // The customer answers the support address: the ticket stays billing's.
    let reference = format!("<{id}>");
    let (_, raw) = raw_mail(
        "bob@customer.test",
        "help@shop.test",
        "Re: Invoice 7",
        "More.",
        &[("In-Reply-To", &reference)],
    );
    let report = ingest(&store, &pipeline, &raw, &MailSource::Pipe);
    assert!(
        matches!(report, IngestReport::FollowUp { number: n, .. } if n == number),
        "{report:?}"
    );
    assert_eq!(
        store.list_tickets_in(None, Some("billing")).unwrap().len(),
        1
    );
    assert!(
        store
            .list_tickets_in(None, Some("support"))
            .unwrap()
            .is_empty()
    );
    // Nothing says which: the first queue.
    let (_, raw) = raw_mail("cy@customer.test", "someone@else.test", "Hello", "?", &[]);
    let IngestReport::NewTicket { number: other, .. } =
        ingest(&store, &pipeline, &raw, &MailSource::Pipe)
    else {
        panic!("a new ticket");
    };
    assert_eq!(
        store.ticket_detail(other).unwrap().unwrap().summary.queue,
        "support"
    );
}
