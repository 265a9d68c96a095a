//! Machines and loops against the real Dovecot and Postfix: a scripted
//! auto-responder answering everything postdesk sends (four kinds: the
//! worst with no machine header at all, and another helpdesk's
//! acknowledgements), bounces (a permanent SMTP failure, and a DSN that
//! quotes our Message-ID), Cc participants and a stranger's subject tag,
//! and a mail over the size limit.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::Utc;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::support::*;
use postdesk::domain::TicketNumber;
use postdesk::ingest::parse::{ParsedMail, parse};
use postdesk::store::{DeliveryView, Store};

const RESPONDER: &str = "responder@example.test";
/// `[limits] auto_replies_per_hour` in these tests.
const LIMIT: u32 = 3;
/// How long the responder keeps answering.
const LOOP_FOR: Duration = Duration::from_secs(30);
/// An exchange has stopped when nothing came for this long.
const QUIET: Duration = Duration::from_secs(10);

/// How the scripted auto-responder answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Responder {
    /// RFC 3834: `Auto-Submitted: auto-replied`, "Out of office: …",
    /// In-Reply-To and References set.
    OutOfOffice,
    /// A badly behaved one that looks like a person: no machine header,
    /// "Re: <subject>", no In-Reply-To or References.
    HumanLike,
    /// The worst case: no machine header, no references, the same subject
    /// every time (our tag is lost), so each answer looks like a new
    /// request from a person. Only the per-address limit can stop it.
    FixedSubject,
    /// Another helpdesk (RT) acknowledging each mail as a new ticket of its
    /// own: `[rt #N] AutoReply:`, `X-RT-Loop-Prevention`, no references
    /// and no `Precedence: bulk` (without its markers, a new person each time).
    OtherHelpdesk,
}

impl Responder {
    fn answer(self, support: &str, mail: &ParsedMail) -> Vec<u8> {
        let id = format!("{}@example.test", unique("auto"));
        let mut head = format!(
            "From: Responder <{RESPONDER}>\r\nTo: {support}\r\nMessage-ID: <{id}>\r\n\
             Date: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n",
            Utc::now().to_rfc2822()
        );
        match self {
            Responder::OutOfOffice => {
                head.push_str(&format!(
                    "Subject: Out of office: {}\r\nAuto-Submitted: auto-replied\r\n",
                    mail.subject
                ));
                if let Some(parent) = &mail.message_id {
                    let mut refs: Vec<String> =
                        mail.references.iter().map(|r| format!("<{r}>")).collect();
                    refs.push(format!("<{parent}>"));
                    head.push_str(&format!(
                        "In-Reply-To: <{parent}>\r\nReferences: {}\r\n",
                        refs.join(" ")
                    ));
                }
            }
            Responder::HumanLike => head.push_str(&format!("Subject: Re: {}\r\n", mail.subject)),
            Responder::FixedSubject => head.push_str("Subject: Thank you for your message\r\n"),
            Responder::OtherHelpdesk => head.push_str(&format!(
                "Subject: [rt.example.test #{}] AutoReply: {}\r\n\
                 X-RT-Loop-Prevention: rt.example.test\r\n",
                mail.subject.len(),
                mail.subject
            )),
        }
        format!("{head}\r\nI am away until Monday and will read your mail then.\r\n").into_bytes()
    }
}

/// One daemon on its own support box, answered by one kind of responder.
struct Desk {
    style: Responder,
    support: String,
    daemon: Daemon,
    _dir: crate::support::TestDir,
    /// When each of its mails reached the responder, from the start.
    received: Vec<Duration>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_responder_in_the_loop_is_stopped_within_the_limit() {
    let stack = Stack::from_env();
    clear_mailbox(&stack, RESPONDER).await;
    let marker = unique("loop");
    let mut desks = Vec::new();
    for style in [
        Responder::OutOfOffice,
        Responder::HumanLike,
        Responder::FixedSubject,
        Responder::OtherHelpdesk,
    ] {
        let support = fresh_support_box(&stack).await;
        let dir = temp_dir();
        let mut config = settings(&stack, &support, dir.path());
        config.limits.auto_replies_per_hour = LIMIT;
        config.support.agents = Vec::new();
        let daemon = Daemon::start(config).await;
        let subject = format!("Question {style:?} {marker}");
        let (_, raw) = raw_mail(RESPONDER, &support, &subject, "Is anyone there?", &[]);
        send_raw(&stack, RESPONDER, &support, &raw).await;
        desks.push(Desk {
            style,
            support,
            daemon,
            _dir: dir,
            received: Vec::new(),
        });
    }

    // The responder answers every mail that reaches it, for LOOP_FOR.
    let start = Instant::now();
    let mut answered = BTreeSet::new();
    // The test's own slow steps (a read of the responder's box, a send),
    // with when they began: a loaded machine can hold one long enough to
    // look like a desk still mailing late.
    let mut slow_steps: Vec<String> = Vec::new();
    let mut note_slow = |what: &str, began: Instant| {
        let took = began.elapsed();
        if took > Duration::from_secs(2) {
            let at = began - start;
            slow_steps.push(format!("{what} from {at:?} took {took:?}"));
            eprintln!("loop: {what} from {at:?} took {took:?}");
        }
    };
    while start.elapsed() < LOOP_FOR {
        let began = Instant::now();
        let mails = inbox(&stack, RESPONDER).await;
        note_slow("reading the responder's box", began);
        for (raw, _) in mails {
            let Ok(mail) = parse(&raw) else { continue };
            if !answered.insert(mail.dedup_key()) {
                continue;
            }
            let from = mail.from.as_ref().map(|m| m.address.to_string());
            let Some(desk) = desks.iter_mut().find(|d| Some(&d.support) == from.as_ref()) else {
                panic!("the responder got a mail from {from:?}");
            };
            desk.received.push(start.elapsed());
            let answer = desk.style.answer(&desk.support, &mail);
            let began = Instant::now();
            send_raw(&stack, RESPONDER, &desk.support, &answer).await;
            note_slow("an answer's send", began);
        }
        let began = Instant::now();
        tokio::time::sleep(Duration::from_millis(250)).await;
        note_slow("the 250 ms pause", began);
    }
    let end = start.elapsed();
    for desk in &desks {
        all_answers_taken_in(&stack, desk).await;
    }

    for desk in &desks {
        let style = desk.style;
        println!(
            "{style:?}: postdesk sent {} mails to the responder, at {:?}",
            desk.received.len(),
            desk.received
        );
        let sent = desk.received.len() as u32;
        assert!(sent >= 1, "{style:?}: the exchange never started");
        assert!(sent <= LIMIT, "{style:?}: {sent} mails, more than {LIMIT}");
        let last = desk.received.last().copied().unwrap_or_default();
        assert!(
            end - last >= QUIET,
            "{style:?}: still mailing at {last:?} of {end:?}; the loop's slow steps: {slow_steps:?}"
        );
        let store = &desk.daemon.store;
        let rows = deliveries_to(store, RESPONDER);
        assert_eq!(rows.len(), desk.received.len(), "{style:?}: {rows:?}");
        assert!(rows.iter().all(|d| d.automatic && d.status == "sent"));
        let tickets = store.list_tickets(None).unwrap();
        match style {
            Responder::OutOfOffice => {
                assert_eq!(sent, 1, "only the confirmation of the first mail");
                assert_eq!(tickets.len(), 1);
                let detail = store.ticket_detail(tickets[0].number).unwrap().unwrap();
                let kinds: Vec<&str> = detail.messages.iter().map(|m| m.kind.as_str()).collect();
                assert_eq!(kinds, ["customer", "confirmation", "auto_reply"]);
                assert_eq!(
                    detail.summary.status.as_str(),
                    "new",
                    "an out-of-office never changes the status"
                );
            }
            Responder::HumanLike => {
                assert_eq!(sent, 1, "a follow-up gets no confirmation");
                assert_eq!(tickets.len(), 1, "the tagged answer is a follow-up");
            }
            Responder::OtherHelpdesk => {
                assert_eq!(sent, 1, "its acknowledgement is never answered");
                assert_eq!(tickets.len(), 1, "nor made a ticket");
            }
            Responder::FixedSubject => {
                assert_eq!(sent, LIMIT, "the limit, and only the limit, stops it");
                assert_eq!(tickets.len() as u32, LIMIT + 1);
                let newest = store.ticket_detail(tickets[0].number).unwrap().unwrap();
                assert!(
                    newest.messages.iter().all(|m| m.kind != "confirmation"),
                    "the ticket past the limit gets no confirmation"
                );
            }
        }
    }
    for desk in desks {
        desk.daemon.stop().await;
    }
}

/// Waits until the desk's support mailbox holds the first mail and one
/// answer for each mail postdesk sent the responder, every one `\Seen`
/// (stored): a loaded machine may deliver or ingest the last answer late,
/// and what the daemon made of it is checked after.
async fn all_answers_taken_in(stack: &Stack, desk: &Desk) {
    let want = 1 + desk.received.len();
    let what = format!(
        "{:?}: {want} mails in its support INBOX, all stored",
        desk.style
    );
    crate::faults::rig::within(&what, 60, || async {
        let (_, mails) = crate::faults::rig::read_box(stack, &desk.support, "INBOX").await;
        (mails.len() == want && mails.iter().all(|m| m.has_flag("Seen"))).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounces_mark_our_delivery_failed_and_get_no_answer() {
    let (stack, support, _dir, daemon) = daemon_on_fresh_box().await;
    let store = daemon.store.clone();
    let marker = unique("bounce");

    // A confirmation to an address the server does not know is refused at
    // RCPT time: the outbox row fails with the server's 5xx.
    let ghost = format!("ghost.{marker}@example.test");
    let (_, raw) = raw_mail(
        &ghost,
        &support,
        &format!("From nowhere {marker}"),
        "Hi?",
        &[],
    );
    send_raw(&stack, &ghost, &support, &raw).await;
    let failed = wait_for_delivery(&store, "the confirmation to the ghost failed", |d| {
        d.recipients == [ghost.clone()] && d.kind == "confirmation" && d.status == "failed"
    })
    .await;
    let error = failed.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("550") || error.contains("5.1.1"),
        "a permanent failure with the server's code: {error}"
    );
    let ghost_ticket = failed.ticket.expect("on a ticket");
    let detail = store.ticket_detail(ghost_ticket).unwrap().unwrap();
    let shown = detail
        .messages
        .iter()
        .find(|m| m.message_id == failed.message_id)
        .expect("the confirmation is on the ticket");
    assert_eq!(shown.delivery.as_deref(), Some("failed"));

    // A confirmation that was delivered, then bounced by the customer's
    // server: the DSN quotes our Message-ID and is tied back to it.
    let customer = "customer2@example.test";
    let subject = format!("Delivered then bounced {marker}");
    send(&stack, customer, &support, &subject, "Please help.").await;
    let confirmation = wait_for_mail(&stack, customer, &subject).await;
    let our_id = confirmation.message_id.clone().expect("a Message-ID");
    wait_for_delivery(&store, "the confirmation was sent", |d| {
        d.message_id == our_id && d.status == "sent"
    })
    .await;
    let ticket = store
        .explain(&our_id)
        .unwrap()
        .expect("ours is stored")
        .ticket;
    let before = store.ticket_detail(ticket).unwrap().unwrap();
    let rows_before = store.deliveries().unwrap().len();

    let dsn_id = format!("{}@mx.customer.test", unique("dsn"));
    let dsn = std::fs::read_to_string(fixture("dsn-mailbox-full.eml"))
        .expect("the DSN fixture")
        .replace("{SUPPORT}", &support)
        .replace("{RECIPIENT}", customer)
        .replace("{ORIGINAL_ID}", &our_id)
        .replace("{SUBJECT}", &confirmation.subject)
        .replace("{DSN_ID}", &dsn_id);
    send_null_sender(&stack, &support, dsn.as_bytes()).await;
    let store2 = store.clone();
    eventually("the DSN is stored", || {
        let store = store2.clone();
        let dsn_id = dsn_id.clone();
        async move { store.explain(&dsn_id).ok().flatten().is_some() }
    })
    .await;
    let explained = store.explain(&dsn_id).unwrap().unwrap();
    assert_eq!(
        explained.ticket, ticket,
        "on the ticket of the mail it reports"
    );
    assert_eq!(explained.kind, "bounce");
    assert!(explained.reason.contains(&our_id), "{}", explained.reason);
    let row = delivery(&store, &our_id);
    assert_eq!(row.status, "failed");
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(customer) && error.contains("5.2.2"),
        "the failed recipient and status are recorded: {error}"
    );

    // Nothing answers the bounce, and the ticket's status stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(store.deliveries().unwrap().len(), rows_before, "no reply");
    let after = store.ticket_detail(ticket).unwrap().unwrap();
    assert_eq!(after.summary.status, before.summary.status);
    let outbound = |d: &postdesk::store::TicketDetail| {
        d.messages.iter().filter(|m| m.direction == "out").count()
    };
    assert_eq!(outbound(&after), outbound(&before));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_addresses_take_part_and_a_strangers_tag_opens_a_new_ticket() {
    let (stack, support, dir, daemon) = daemon_on_fresh_box().await;
    let store = daemon.store.clone();
    let marker = unique("cc");
    let (requester, cc, stranger) = (
        "customer4@example.test",
        "customer5@example.test",
        "customer3@example.test",
    );

    let subject = format!("Shared printer {marker}");
    let (_, raw) = raw_mail(
        requester,
        &support,
        &subject,
        "The office printer is down.",
        &[("Cc", "Five <customer5@example.test>")],
    );
    send_raw(&stack, requester, &support, &raw).await;
    let confirmation = wait_for_mail(&stack, requester, &marker).await;
    let number = tag_number(&confirmation.subject);

    // The Cc address is a participant, as `tickets show --json` says.
    let show = cli(
        dir.path(),
        &["tickets", "show", &number.to_string(), "--json"],
    );
    let show: serde_json::Value = serde_json::from_str(&show).expect("JSON");
    let participants: Vec<&str> = show["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(participants.contains(&cc), "{participants:?}");
    assert!(participants.contains(&requester), "{participants:?}");

    // So its mail with nothing but the tag threads there.
    let (cc_id, raw) = raw_mail(
        cc,
        &support,
        &format!("Re: [Ticket #{number}] {subject}"),
        "Same on the second floor.",
        &[],
    );
    send_raw(&stack, cc, &support, &raw).await;
    let explained = wait_for_explanation(&store, &cc_id).await;
    assert_eq!(explained.ticket, TicketNumber(number));
    assert!(
        explained.reason.contains("takes part"),
        "{}",
        explained.reason
    );

    // A stranger with the same tag gets a ticket of its own, and why.
    let (stranger_id, raw) = raw_mail(
        stranger,
        &support,
        &format!("[Ticket #{number}] {subject}"),
        "Let me see that ticket.",
        &[],
    );
    send_raw(&stack, stranger, &support, &raw).await;
    let explained = wait_for_explanation(&store, &stranger_id).await;
    assert_ne!(explained.ticket, TicketNumber(number));
    assert!(
        explained.reason.contains(&format!("#{number}"))
            && explained.reason.contains("does not take part"),
        "{}",
        explained.reason
    );
    let printed = cli(dir.path(), &["explain", &format!("<{stranger_id}>")]);
    assert!(
        printed.contains(&format!("ticket #{}", explained.ticket))
            && printed.contains("does not take part"),
        "{printed}"
    );
    let own = wait_for_mail(&stack, stranger, &marker).await;
    assert_eq!(tag_number(&own.subject), explained.ticket.0);
    let detail = store.ticket_detail(TicketNumber(number)).unwrap().unwrap();
    assert!(!detail.participants.iter().any(|p| p == stranger));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_mail_is_quarantined_and_its_sender_told_politely() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let mut config = settings(&stack, &support, dir.path());
    config.limits.max_message_bytes = 8192;
    let daemon = Daemon::start(config).await;
    let store = daemon.store.clone();
    let marker = unique("huge");
    let customer = "customer5@example.test";

    let line = "2026-03-01 12:00:00 printer: paper jam in tray 2, retrying\n";
    let body = format!("All the logs you asked for:\n{}", line.repeat(400));
    let subject = format!("Huge logs {marker}");
    let (id, raw) = raw_mail(customer, &support, &subject, &body, &[]);
    assert!(raw.len() > 8192);
    send_raw(&stack, customer, &support, &raw).await;

    let note = wait_for_mail(&stack, customer, &marker).await;
    assert_eq!(note.subject, format!("Re: {subject}"));
    assert_eq!(note.in_reply_to, vec![id]);
    assert_eq!(note.header("auto-submitted"), Some("auto-replied"));
    assert!(
        note.text.contains("could not take your mail") && note.text.contains("8192 bytes"),
        "{}",
        note.text
    );
    let quarantined = store.quarantine_list().unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0]
            .reason
            .contains("more than the limit of 8192 bytes"),
        "{}",
        quarantined[0].reason
    );
    assert!(store.list_tickets(None).unwrap().is_empty());

    // The mail is done with on the server and blocks nothing behind it.
    let small = format!("Small follow-up {marker}");
    send(
        &stack,
        customer,
        &support,
        &small,
        "Here is a summary instead.",
    )
    .await;
    let confirmation = wait_for_mail(&stack, customer, &small).await;
    assert!(confirmation.subject.starts_with("[Ticket #1]"));
    let mails = inbox(&stack, &support).await;
    assert_eq!(mails.len(), 2);
    assert!(mails.iter().all(|(_, seen)| *seen), "both are marked seen");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        mails_with_subject(&stack, customer, &subject).await.len(),
        1,
        "one polite note"
    );
    daemon.stop().await;
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Sends as a bounce is sent: with the null envelope sender `<>`.
async fn send_null_sender(stack: &Stack, to: &str, raw: &[u8]) {
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(stack.host.clone())
        .port(stack.smtp_port)
        .build();
    let envelope = Envelope::new(None, vec![to.parse().expect("to")]).expect("an envelope");
    mailer
        .send_raw(&envelope, raw)
        .await
        .expect("the stack accepts the bounce");
}

fn deliveries_to(store: &Store, address: &str) -> Vec<DeliveryView> {
    store
        .deliveries()
        .expect("the outbox reads")
        .into_iter()
        .filter(|d| d.recipients.iter().any(|r| r == address))
        .collect()
}

fn delivery(store: &Store, message_id: &str) -> DeliveryView {
    store
        .deliveries()
        .expect("the outbox reads")
        .into_iter()
        .find(|d| d.message_id == message_id)
        .unwrap_or_else(|| panic!("no outgoing mail {message_id}"))
}

/// Waits (bounded) for an outgoing mail that satisfies `check`.
async fn wait_for_delivery(
    store: &std::sync::Arc<Store>,
    what: &str,
    check: impl Fn(&DeliveryView) -> bool,
) -> DeliveryView {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = store.deliveries().expect("the outbox reads");
        if let Some(row) = rows.into_iter().find(|d| check(d)) {
            return row;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_explanation(
    store: &std::sync::Arc<Store>,
    message_id: &str,
) -> postdesk::store::Explanation {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = store.explain(message_id).expect("explain reads") {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "<{message_id}> was not stored within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `postdesk ARGS` on the daemon's database; its stdout.
fn cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(binary())
        .args(args)
        .envs(crate::support::test_database(&dir.join("postdesk.db")).process_env())
        .env("RUST_LOG", "warn")
        .output()
        .expect("postdesk runs");
    assert!(
        out.status.success(),
        "postdesk {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tag_number(subject: &str) -> i64 {
    let start = subject.find("[Ticket #").expect("a tag") + "[Ticket #".len();
    subject[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .expect("a number")
}
