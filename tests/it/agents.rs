//! Agents working from their mail client, against the real stack: the
//! notification read from agent@'s INBOX, a reply over authenticated
//! submission relayed to the customer, notes, commands with their status
//! emails, a forged agent, reopening, the reopen window and autoclose.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::support::*;
use postdesk::domain::{Status, TicketNumber};
use postdesk::ingest::parse::ParsedMail;

mod cc;

const AGENT: &str = "agent@example.test";

/// Sends as the agent from their own client: submission, STARTTLS, AUTH.
async fn submit_as_agent(stack: &Stack, to: &str, raw: &[u8]) {
    let pem = std::fs::read(&stack.ca_file).expect("the stack's CA");
    let tls = TlsParameters::builder(stack.host.clone())
        .add_root_certificate(Certificate::from_pem(&pem).expect("a PEM CA"))
        .build_rustls()
        .expect("TLS parameters");
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(stack.host.clone())
        .port(stack.submission_port)
        .tls(Tls::Required(tls))
        .credentials(Credentials::new(AGENT.to_string(), stack.password.clone()))
        .build();
    let envelope = Envelope::new(Some(AGENT.parse().unwrap()), vec![to.parse().unwrap()]).unwrap();
    mailer
        .send_raw(&envelope, raw)
        .await
        .expect("submission accepts the agent's mail");
}

/// An agent's reply to a notification, as a mail client writes it: the
/// new text, a signature, and the quoted notification.
fn agent_reply(notification: &ParsedMail, body: &str) -> Vec<u8> {
    let parent = notification.message_id.clone().expect("a Message-ID");
    let reply_to = notification
        .reply_to
        .first()
        .map(|m| m.address.clone())
        .expect("a Reply-To");
    let quoted: String = notification
        .text
        .lines()
        .map(|l| format!("> {l}\r\n"))
        .collect();
    format!(
        "From: Alice Agent <{AGENT}>\r\nTo: {reply_to}\r\nSubject: Re: {}\r\nMessage-ID: <{}@agent.test>\r\n\
         In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         {body}\r\n\r\n-- \r\nAlice Agent\r\nSecond-level support\r\n\r\nOn Mon, 1 Jan 2026 at 10:00, Example Support <{reply_to}> wrote:\r\n{quoted}",
        notification.subject,
        unique("a"),
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

/// A new ticket from customer1 and its notification in agent@'s INBOX.
async fn ticket_with_notification(
    stack: &Stack,
    support: &str,
    marker: &str,
) -> (String, ParsedMail) {
    let customer_id = send(
        stack,
        "customer1@example.test",
        support,
        &format!("Help {marker}"),
        "My screen is dark.",
    )
    .await;
    let notification = wait_for_mail(stack, AGENT, marker).await;
    (customer_id, notification)
}

fn number_of(subject: &str) -> TicketNumber {
    let n = postdesk::ingest::subject::SubjectTag::new("Ticket")
        .find(subject)
        .expect("a tag");
    TicketNumber(n as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_reply_is_relayed_and_the_customers_answer_threads_back() {
    let (stack, support, _dir, daemon) = daemon_on_fresh_box().await;
    let marker = unique("relay");
    let (customer_id, notification) = ticket_with_notification(&stack, &support, &marker).await;
    let number = number_of(&notification.subject);
    assert_eq!(
        notification.header("auto-submitted"),
        Some("auto-generated")
    );
    assert!(notification.text.contains("My screen is dark."));
    assert!(
        notification.text.contains("#resolve"),
        "the command summary"
    );
    assert!(notification.text.contains("/t/"), "the status link");

    submit_as_agent(
        &stack,
        &support,
        &agent_reply(&notification, "Please press the power button."),
    )
    .await;

    let relayed = wait_for_mail(
        &stack,
        "customer1@example.test",
        &format!("Re: [Ticket #{number}] Help {marker}"),
    )
    .await;
    let from = relayed.from.clone().unwrap();
    assert_eq!(from.address, support);
    assert_eq!(
        from.name.as_deref(),
        Some("Alice Agent via Example Support")
    );
    assert_eq!(
        relayed.in_reply_to,
        vec![customer_id.clone()],
        "threaded under the customer's mail"
    );
    assert!(relayed.references.contains(&customer_id));
    assert!(relayed.text.contains("Please press the power button."));
    assert!(
        !relayed.text.contains("Second-level support"),
        "the agent's signature is removed"
    );
    assert!(
        !relayed.text.contains("My screen is dark."),
        "the quoted notification is removed"
    );
    assert!(!relayed.text.contains("#resolve"));

    // The customer answers the relayed reply, with a new subject even.
    let parent = relayed.message_id.clone().unwrap();
    let (answer_id, answer) = raw_mail(
        "customer1@example.test",
        &support,
        "it works now",
        "Thank you!",
        &[
            ("In-Reply-To", &format!("<{parent}>")),
            ("References", &format!("<{parent}>")),
        ],
    );
    send_raw(&stack, "customer1@example.test", &support, &answer).await;
    let store = daemon.store.clone();
    eventually("the answer is on the ticket", || {
        let (store, answer_id) = (store.clone(), answer_id.clone());
        async move {
            store
                .ticket_detail(number)
                .ok()
                .flatten()
                .is_some_and(|t| t.messages.iter().any(|m| m.message_id == answer_id))
        }
    })
    .await;
    let ticket = daemon.store.ticket_detail(number).unwrap().unwrap();
    assert_eq!(ticket.summary.status, Status::Open);
    assert_eq!(daemon.store.list_tickets(None).unwrap().len(), 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_stay_internal_and_resolve_sends_the_reply_then_the_status() {
    let (stack, support, _dir, daemon) = daemon_on_fresh_box().await;
    let marker = unique("note");
    let (_, notification) = ticket_with_notification(&stack, &support, &marker).await;
    let number = number_of(&notification.subject);

    submit_as_agent(
        &stack,
        &support,
        &agent_reply(&notification, "#note\r\nSECRET-NOTE customer seems upset"),
    )
    .await;
    let store = daemon.store.clone();
    eventually("the note is stored", || {
        let store = store.clone();
        async move {
            store
                .ticket_detail(number)
                .ok()
                .flatten()
                .is_some_and(|t| t.messages.iter().any(|m| m.kind == "note"))
        }
    })
    .await;

    submit_as_agent(
        &stack,
        &support,
        &agent_reply(&notification, "#resolve\r\nFixed on our side."),
    )
    .await;
    let status = wait_for_mail(
        &stack,
        "customer1@example.test",
        &format!("[Ticket #{number}] Help {marker} (resolved)"),
    )
    .await;
    assert_eq!(status.header("auto-submitted"), Some("auto-generated"));
    let mails = mails_with_subject(&stack, "customer1@example.test", &marker).await;
    assert!(
        mails.iter().any(|m| m.text.contains("Fixed on our side.")),
        "the text went as a reply"
    );
    assert!(
        mails.iter().all(|m| !m.text.contains("SECRET-NOTE")),
        "a note never reaches the customer"
    );
    assert!(mails.iter().all(|m| !m.text.contains("#resolve")));

    let ticket = daemon.store.ticket_detail(number).unwrap().unwrap();
    assert_eq!(ticket.summary.status, Status::Resolved);
    let token = ticket_token(&ticket);
    let page = daemon.store.ticket_page(&token).unwrap().unwrap();
    assert!(
        page.messages
            .iter()
            .all(|m| !m.text.contains("SECRET-NOTE")),
        "nor the customer's page"
    );
    assert!(
        page.messages
            .iter()
            .any(|m| m.text.contains("Fixed on our side."))
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_agent_gets_nothing_done() {
    let (stack, support, _dir, daemon) = daemon_on_fresh_box().await;
    let marker = unique("forge");
    let (_, notification) = ticket_with_notification(&stack, &support, &marker).await;
    let number = number_of(&notification.subject);

    // customer2 writes with the agent's From, the tag, a command, no token.
    let raw = format!(
        "From: Alice Agent <{AGENT}>\r\nTo: {support}\r\nSubject: Re: [Ticket #{number}] Help {marker}\r\n\
         Message-ID: <{}@evil.test>\r\n\r\n#close\r\nFORGED TEXT\r\n",
        unique("f")
    );
    send_raw(&stack, "customer2@example.test", &support, raw.as_bytes()).await;
    let store = daemon.store.clone();
    eventually("the forged mail is read", || {
        let (stack, support) = (stack.clone(), support.clone());
        async move {
            inbox(&stack, &support)
                .await
                .iter()
                .filter(|(_, seen)| *seen)
                .count()
                == 2
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticket = store.ticket_detail(number).unwrap().unwrap();
    assert_ne!(ticket.summary.status, Status::Closed, "no command ran");
    let forged = ticket
        .messages
        .iter()
        .find(|m| m.text.contains("FORGED TEXT"));
    assert_eq!(
        forged.map(|m| m.kind.as_str()),
        Some("note"),
        "kept as an internal note, never shown to the customer"
    );
    let told = wait_for_mail(
        &stack,
        AGENT,
        &format!("Not applied: Re: [Ticket #{}] Help {marker}", number.0),
    )
    .await;
    assert!(
        told.text.contains("not authenticated"),
        "the real agent is told why"
    );
    let customer_mails = mails_with_subject(&stack, "customer1@example.test", &marker).await;
    assert!(
        customer_mails
            .iter()
            .all(|m| !m.text.contains("FORGED TEXT")),
        "nothing relayed"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_tickets_reopen_within_the_window_and_resolved_ones_close_by_themselves() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let mut config = settings(&stack, &support, dir.path());
    config.support.autoclose_days = 2.0 / 86_400.0; // two seconds
    config.support.reopen_days = 1.0;
    let daemon = Daemon::start(config.clone()).await;
    let marker = unique("life");
    let (_, notification) = ticket_with_notification(&stack, &support, &marker).await;
    let number = number_of(&notification.subject);

    submit_as_agent(&stack, &support, &agent_reply(&notification, "#resolve")).await;
    wait_for_mail(
        &stack,
        "customer1@example.test",
        &format!("Help {marker} (resolved)"),
    )
    .await;
    wait_for_mail(
        &stack,
        "customer1@example.test",
        &format!("Help {marker} (closed)"),
    )
    .await;
    assert_eq!(
        daemon
            .store
            .ticket_detail(number)
            .unwrap()
            .unwrap()
            .summary
            .status,
        Status::Closed
    );

    // Within the reopen window, a reply reopens the closed ticket.
    send(
        &stack,
        "customer1@example.test",
        &support,
        &format!("Re: [Ticket #{}] Help {marker}", number.0),
        "Broken again",
    )
    .await;
    let store = daemon.store.clone();
    eventually("the ticket reopens", || {
        let store = store.clone();
        async move {
            store
                .ticket_detail(number)
                .ok()
                .flatten()
                .is_some_and(|t| t.summary.status == Status::Open)
        }
    })
    .await;
    daemon.stop().await;

    // Past the window, the same reply opens a new ticket that names the old one.
    config.support.reopen_days = 0.0;
    let (store, pipeline) = postdesk::app::open_store(&config).unwrap();
    store
        .set_status(&pipeline, number, Status::Closed, None, chrono::Utc::now())
        .unwrap();
    drop(store);
    let daemon = Daemon::start(config).await;
    send(
        &stack,
        "customer1@example.test",
        &support,
        &format!("Re: [Ticket #{}] Help {marker}", number.0),
        "Still broken",
    )
    .await;
    let follow_up = format!("[Ticket #{}] Help {marker}", number.0 + 1);
    let confirmation = wait_for_mail(&stack, "customer1@example.test", &follow_up).await;
    assert!(
        confirmation
            .text
            .contains(&format!("continues your earlier request #{}", number.0))
    );
    let tickets = daemon.store.list_tickets(None).unwrap();
    assert_eq!(tickets.len(), 2, "a new ticket past the window");
    let newest = daemon
        .store
        .ticket_detail(tickets[0].number)
        .unwrap()
        .unwrap();
    assert!(
        newest.messages[0]
            .thread_reason
            .contains(&format!("ticket #{} was closed", number.0))
    );
    daemon.stop().await;
}

/// A customer-page token for the ticket, read from its confirmation.
fn ticket_token(ticket: &postdesk::store::TicketDetail) -> String {
    let confirmation = ticket
        .messages
        .iter()
        .find(|m| m.kind == "confirmation")
        .expect("a confirmation");
    let line = confirmation
        .text
        .lines()
        .find(|l| l.contains("/t/"))
        .expect("a link");
    line.rsplit("/t/").next().unwrap().trim().to_string()
}
