//! A backlog of customer mail with known expectations, and the check that
//! the daemon did exactly what it should with it: one ticket per new mail,
//! every follow-up on its ticket, one confirmation per ticket in the
//! customer's INBOX (no more), every support mail marked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use postdesk::domain::TicketNumber;
use postdesk::ingest::parse::parse;

use super::rig::{Stored, read_box};
use crate::support::{Stack, fresh_support_box, open_store, unique};

/// The customers of a private stack, whose INBOXes no other test reads.
pub const CUSTOMERS: [&str; 5] = [
    "customer1@example.test",
    "customer2@example.test",
    "customer3@example.test",
    "customer4@example.test",
    "customer5@example.test",
];

/// `n` customers with INBOXes of their own on the shared stack (spare
/// support boxes, emptied first).
pub async fn own_customers(stack: &Stack, n: usize) -> Vec<String> {
    let mut customers = Vec::with_capacity(n);
    for _ in 0..n {
        customers.push(fresh_support_box(stack).await);
    }
    customers
}

/// A mail that opens a ticket.
pub struct Original {
    pub message_id: String,
    pub from: String,
    pub subject: String,
}

/// Mails in arrival order and what each should become.
pub struct Backlog {
    pub support: String,
    /// Who writes (in turn); their INBOXes get the confirmations.
    pub customers: Vec<String>,
    /// In every subject: tells this backlog's confirmations apart.
    pub run: String,
    pub mails: Vec<Vec<u8>>,
    pub originals: Vec<Original>,
    /// Follow-up Message-ID → index of the original it answers.
    pub follow_ups: BTreeMap<String, usize>,
}

impl Backlog {
    /// `total` mails to `support` from [`CUSTOMERS`] (for private stacks);
    /// every `every`-th answers an earlier new mail by In-Reply-To and
    /// References (ticket numbers are assigned in ingest order, so a tag
    /// could not be written in advance).
    pub fn new(support: &str, total: usize, every: usize) -> Backlog {
        let customers: Vec<String> = CUSTOMERS.iter().map(|c| c.to_string()).collect();
        Backlog::with_customers(support, &customers, total, every)
    }

    /// The same from `customers` (on the shared stack: mailboxes of the
    /// test's own, so other tests' INBOXes stay small).
    pub fn with_customers(
        support: &str,
        customers: &[String],
        total: usize,
        every: usize,
    ) -> Backlog {
        let run = unique("b");
        let mut backlog = Backlog {
            support: support.to_string(),
            customers: customers.to_vec(),
            run: run.clone(),
            mails: Vec::with_capacity(total),
            originals: Vec::new(),
            follow_ups: BTreeMap::new(),
        };
        for i in 0..total {
            if i % every == every - 1 && !backlog.originals.is_empty() {
                // Deterministic spread over earlier tickets.
                let target = (i * 7919) % backlog.originals.len();
                backlog.push_follow_up(&run, i, target);
            } else {
                backlog.push_original(&run, i);
            }
        }
        backlog
    }

    fn push_original(&mut self, run: &str, i: usize) {
        let from = self.customers[i % self.customers.len()].clone();
        let subject = format!("Backlog {run} mail {i}: the printer on floor {i} jams");
        let message_id = format!("{run}.{i}@customer.test");
        let body = format!(
            "Hello,\n\nthe printer on floor {i} jams again. {}\n\nRegards,\n{from}\n",
            "It makes a grinding noise and then shows error E-42. ".repeat(12)
        );
        self.mails.push(mail(
            &from,
            &self.support,
            &subject,
            &message_id,
            &body,
            None,
        ));
        self.originals.push(Original {
            message_id,
            from,
            subject,
        });
    }

    fn push_follow_up(&mut self, run: &str, i: usize, target: usize) {
        let original = &self.originals[target];
        let message_id = format!("{run}.{i}.re@customer.test");
        let subject = format!("Re: {}", original.subject);
        let body = format!(
            "It still jams (follow-up {i}).\n\nOn Monday {} wrote:\n> the printer jams again\n",
            original.from
        );
        let raw = mail(
            &original.from,
            &self.support,
            &subject,
            &message_id,
            &body,
            Some(&original.message_id),
        );
        self.mails.push(raw);
        self.follow_ups.insert(message_id, target);
    }

    /// Message-IDs expected on the ticket of original `index`.
    fn expected_ids(&self, index: usize) -> BTreeSet<String> {
        let mut ids: BTreeSet<String> = self
            .follow_ups
            .iter()
            .filter(|(_, t)| **t == index)
            .map(|(id, _)| id.clone())
            .collect();
        ids.insert(self.originals[index].message_id.clone());
        ids
    }

    /// This backlog's confirmations as received, by ticket number.
    pub async fn confirmations(&self, stack: &Stack) -> BTreeMap<i64, Vec<Received>> {
        confirmations(stack, &self.customers, &self.run).await
    }
}

fn mail(
    from: &str,
    to: &str,
    subject: &str,
    message_id: &str,
    body: &str,
    answers: Option<&str>,
) -> Vec<u8> {
    let mut headers = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    if let Some(id) = answers {
        headers.push_str(&format!("In-Reply-To: <{id}>\r\nReferences: <{id}>\r\n"));
    }
    let body = body.replace('\n', "\r\n");
    format!("{headers}\r\n{body}").into_bytes()
}

/// One confirmation as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub subject: String,
    pub message_id: Option<String>,
}

/// The confirmations (subject `[Ticket #N] …` with `marker` in it) in
/// `customers`' INBOXes, by ticket number.
pub async fn confirmations(
    stack: &Stack,
    customers: &[String],
    marker: &str,
) -> BTreeMap<i64, Vec<Received>> {
    let mut found: BTreeMap<i64, Vec<Received>> = BTreeMap::new();
    for customer in customers {
        let (_, mails) = read_box(stack, customer, "INBOX").await;
        for m in mails {
            let Ok(parsed) = parse(&m.raw) else { continue };
            if !parsed.subject.contains(marker) {
                continue;
            }
            if let Some(n) = tag_number(&parsed.subject) {
                found.entry(n).or_default().push(Received {
                    subject: parsed.subject.clone(),
                    message_id: parsed.message_id.clone(),
                });
            }
        }
    }
    found
}

/// N from a subject starting `[Ticket #N] `.
pub fn tag_number(subject: &str) -> Option<i64> {
    let rest = subject.strip_prefix("[Ticket #")?;
    rest.split(']').next()?.parse().ok()
}

/// Everything rule 1 promises about this backlog, checked on a stopped
/// daemon's database and the real mailboxes. Doubled confirmations are
/// checked last and listed with their count (and whether the copies share
/// one Message-ID) in the failure message.
/// `crashes`: how many times the daemon was SIGKILLed while it worked.
pub async fn verify(backlog: &Backlog, stack: &Stack, db: &Path, crashes: usize) {
    let store = open_store(db);
    let tickets = store.list_tickets(None).expect("tickets");
    assert_eq!(
        tickets.len(),
        backlog.originals.len(),
        "one ticket per new mail, no more, no fewer"
    );
    let by_subject: BTreeMap<&str, i64> = tickets
        .iter()
        .map(|t| (t.subject.as_str(), t.number.0))
        .collect();
    let mut lost = Vec::new();
    let mut unsent = Vec::new();
    for (index, original) in backlog.originals.iter().enumerate() {
        let Some(&number) = by_subject.get(original.subject.as_str()) else {
            lost.push(original.subject.clone());
            continue;
        };
        let detail = store
            .ticket_detail(TicketNumber(number))
            .expect("a detail")
            .expect("the ticket exists");
        assert_eq!(detail.summary.requester, original.from, "ticket #{number}");
        let incoming: BTreeSet<String> = detail
            .messages
            .iter()
            .filter(|m| m.direction == "in")
            .map(|m| m.message_id.clone())
            .collect();
        assert_eq!(
            incoming,
            backlog.expected_ids(index),
            "the mails on ticket #{number}"
        );
        let confirmations: Vec<_> = detail
            .messages
            .iter()
            .filter(|m| m.kind == "confirmation")
            .collect();
        assert_eq!(confirmations.len(), 1, "confirmations of ticket #{number}");
        if confirmations[0].delivery.as_deref() != Some("sent") {
            unsent.push((number, confirmations[0].delivery.clone()));
        }
    }
    assert!(lost.is_empty(), "{} new mails made no ticket", lost.len());
    assert!(unsent.is_empty(), "confirmations not sent: {unsent:?}");

    let (_, support_mails) = read_box(stack, &backlog.support, "INBOX").await;
    check_support_box(backlog, &support_mails);

    let found = backlog.confirmations(stack).await;
    for (number, copies) in &found {
        let ticket = tickets.iter().find(|t| t.number.0 == *number);
        let ticket =
            ticket.unwrap_or_else(|| panic!("a confirmation for unknown ticket #{number}"));
        assert_eq!(
            copies[0].subject,
            format!("[Ticket #{number}] {}", ticket.subject)
        );
    }
    let missing: Vec<i64> = by_subject
        .values()
        .filter(|n| !found.contains_key(n))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "confirmations never received: {missing:?}"
    );
    assert_delivered(&found, crashes);
}

/// Each confirmation exactly once; the failure lists the doubles.
pub fn assert_once(found: &BTreeMap<i64, Vec<Received>>) {
    assert_delivered(found, 0);
}

/// Each confirmation once, except that a crash may repeat the one mail it
/// interrupted after the SMTP server had taken it but before its "250"
/// reached us (no SMTP client can tell those apart, see
/// `src/store/outbox.rs`): then a second copy with the same Message-ID,
/// at most one per crash.
pub fn assert_delivered(found: &BTreeMap<i64, Vec<Received>>, crashes: usize) {
    let doubled: Vec<String> = found
        .iter()
        .filter(|(_, copies)| copies.len() > 1)
        .map(|(n, copies)| {
            let ids: BTreeSet<_> = copies.iter().map(|c| c.message_id.clone()).collect();
            let same = if ids.len() == 1 {
                "one Message-ID"
            } else {
                "different Message-IDs"
            };
            format!("#{n}: {} copies, {same}", copies.len())
        })
        .collect();
    let resends_of_one_mail = found.values().all(|copies| {
        let ids: BTreeSet<_> = copies.iter().map(|c| c.message_id.clone()).collect();
        copies.len() <= 2 && ids.len() == 1
    });
    assert!(
        doubled.len() <= crashes && resends_of_one_mail,
        "{} of {} confirmations arrived more than once in the customers' INBOXes \
         ({crashes} crashes allow at most {crashes} repeats of one mail each): {doubled:?}",
        doubled.len(),
        found.len()
    );
    if !doubled.is_empty() {
        eprintln!(
            "{} crashes repeated {} confirmations: {doubled:?}",
            crashes,
            doubled.len()
        );
    }
}

/// The support mailbox still holds each backlog mail once, all `\Seen`.
fn check_support_box(backlog: &Backlog, mails: &[Stored]) {
    assert_eq!(mails.len(), backlog.mails.len(), "support INBOX size");
    let mut ids = BTreeSet::new();
    let mut unseen = Vec::new();
    for m in mails {
        let id = parse(&m.raw)
            .ok()
            .and_then(|p| p.message_id)
            .expect("a Message-ID");
        assert!(ids.insert(id), "a support mail twice");
        if !m.has_flag("Seen") {
            unseen.push(m.uid);
        }
    }
    assert!(
        unseen.is_empty(),
        "{} stored mails are not \\Seen on the server (UIDs {unseen:?})",
        unseen.len()
    );
}
