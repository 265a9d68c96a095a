//! The in-memory desk of `bench_work`: the store's facts the pure
//! pipeline reads (`IngestLookup`), learnt from each outcome as
//! `store::write` writes it and answered as `store::lookup` answers, so
//! that replies thread onto their tickets as in the daemon; and the counts
//! `bench_ingest` reads from the daemon's database, to check that the desk
//! answers as the store does. No I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};

use postdesk::domain::{MessageKind, Role, Status, TicketNumber};
use postdesk::ingest::Outcome;
use postdesk::ingest::apply::{IngestLookup, Plan, TicketChange, TicketInfo};
use postdesk::ingest::parse::Mailbox;
use postdesk::ingest::thread::ThreadLookup;
use postdesk::outbound::compose::OutgoingMail;

/// What the store holds after these mails, as counted by `bench_ingest`.
#[derive(Default)]
pub struct Counts {
    pub tickets: i64,
    pub inbound: i64,
    pub confirmations: i64,
    pub outbox: i64,
    /// Quarantined or ignored (both rows of the `quarantine` table).
    pub quarantined: i64,
    pub duplicates: i64,
}

impl Counts {
    /// Prints the counts and, given the daemon's, whether they match
    /// (loudly when not: the desk then differs from the store).
    pub fn report(&self, expect: Option<&str>) -> anyhow::Result<()> {
        println!(
            "work counts: {} tickets, {} inbound messages, {} confirmations, {} outbox rows, \
             {} quarantined or ignored, {} duplicates",
            self.tickets,
            self.inbound,
            self.confirmations,
            self.outbox,
            self.quarantined,
            self.duplicates
        );
        let Some(expect) = expect else {
            return Ok(());
        };
        let daemon: Vec<i64> = expect
            .split(',')
            .map(|v| v.trim().parse::<i64>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("--expect {expect:?} is not TICKETS,CONFIRMATIONS,OUTBOX"))?;
        let ours = vec![self.tickets, self.confirmations, self.outbox];
        if daemon == ours {
            println!("work counts match the daemon's (tickets, confirmations, outbox rows)");
        } else {
            println!(
                "WORK COUNTS DIFFER FROM THE DAEMON'S: tickets, confirmations, outbox rows \
                 {ours:?} here, {daemon:?} stored by the daemon: the in-memory desk does not \
                 answer as the store does, so this is not the daemon's work"
            );
        }
        Ok(())
    }
}

/// The store's facts in memory: what `store::write` writes for each
/// outcome, answered as `store::lookup` answers.
#[derive(Default)]
pub struct Desk {
    /// `raw_mails.dedup_key`.
    seen: HashSet<String>,
    /// `messages.message_id` → ticket, inbound and ours (no bench mail
    /// reuses an ID, so which of two the store prefers never shows).
    message_ticket: HashMap<String, TicketNumber>,
    tickets: HashMap<i64, Ticket>,
    /// The highest ticket number (the store's `max(number)`).
    highest: i64,
    /// `recent_automatic_mails`: automatic mails by recipient.
    automatic: HashMap<String, Vec<DateTime<Utc>>>,
    pub counts: Counts,
}

struct Ticket {
    subject: String,
    status: Status,
    requester: Mailbox,
    queue: String,
    last_activity_at: DateTime<Utc>,
    /// By address (the store's ORDER BY address).
    people: BTreeMap<String, (Mailbox, Role)>,
    customer_message_ids: Vec<String>,
}

impl Desk {
    pub fn learn(&mut self, outcome: &Outcome, now: DateTime<Utc>) {
        match outcome {
            Outcome::Duplicate => self.counts.duplicates += 1,
            Outcome::Quarantine {
                dedup_key, notice, ..
            } => {
                self.seen.insert(dedup_key.clone());
                self.counts.quarantined += 1;
                if let Some(notice) = notice {
                    self.enqueue(None, notice, now);
                }
            }
            Outcome::Ignored { dedup_key, .. } => {
                self.seen.insert(dedup_key.clone());
                self.counts.quarantined += 1;
            }
            Outcome::Stored(plan) => self.store(plan, now),
        }
    }

    /// `store::write::write_plan`, in memory.
    fn store(&mut self, plan: &Plan, now: DateTime<Utc>) {
        self.seen.insert(plan.dedup_key.clone());
        self.counts.inbound += 1;
        let number = plan.ticket.number();
        match &plan.ticket {
            TicketChange::Create(t) => {
                self.counts.tickets += 1;
                let ticket = Ticket {
                    subject: t.subject.clone(),
                    status: Status::New,
                    requester: t.requester.clone(),
                    queue: t.queue.clone(),
                    last_activity_at: now,
                    people: BTreeMap::new(),
                    customer_message_ids: Vec::new(),
                };
                self.tickets.insert(number.0, ticket);
                self.highest = self.highest.max(number.0);
            }
            TicketChange::Update { status, .. } => {
                if let Some(t) = self.tickets.get_mut(&number.0) {
                    t.last_activity_at = now;
                    t.status = status.unwrap_or(t.status);
                }
            }
        }
        if let Some(t) = self.tickets.get_mut(&number.0) {
            for (person, role) in &plan.participants {
                // Added, or a proposed one promoted; never demoted.
                let key = person.address.to_string();
                match t.people.get_mut(&key) {
                    None => {
                        t.people.insert(key, (person.clone(), *role));
                    }
                    Some((old, old_role)) if *old_role == Role::Proposed && *role != *old_role => {
                        let name = person.name.clone().or_else(|| old.name.clone());
                        *old = Mailbox {
                            name,
                            ..person.clone()
                        };
                        *old_role = *role;
                    }
                    Some(_) => {}
                }
            }
            for address in &plan.removed_participants {
                if matches!(
                    t.people.get(address.as_str()),
                    Some((_, Role::Cc | Role::Proposed))
                ) {
                    t.people.remove(address.as_str());
                }
            }
        }
        let id = &plan.message.message_id;
        self.message(number, id, plan.message.kind);
        for mail in &plan.outgoing {
            self.enqueue(Some(number), mail, now);
        }
    }

    /// A `messages` row's part in the lookups.
    fn message(&mut self, ticket: TicketNumber, id: &str, kind: MessageKind) {
        self.message_ticket.entry(id.to_string()).or_insert(ticket);
        if kind == MessageKind::Customer
            && !id.starts_with("sha256:")
            && let Some(t) = self.tickets.get_mut(&ticket.0)
        {
            t.customer_message_ids.push(id.to_string());
        }
    }

    /// `store::write::enqueue`: an outbox row, and a message of its ticket.
    fn enqueue(&mut self, ticket: Option<TicketNumber>, mail: &OutgoingMail, now: DateTime<Utc>) {
        self.counts.outbox += 1;
        if mail.kind == MessageKind::Confirmation {
            self.counts.confirmations += 1;
        }
        if mail.automatic_reply {
            for to in &mail.recipients {
                self.automatic.entry(to.clone()).or_default().push(now);
            }
        }
        if let Some(ticket) = ticket {
            self.message(ticket, &mail.message_id, mail.kind);
        }
    }
}

impl ThreadLookup for Desk {
    fn is_seen(&self, dedup_key: &str) -> anyhow::Result<bool> {
        Ok(self.seen.contains(dedup_key))
    }
    fn ticket_of_message(&self, message_id: &str) -> anyhow::Result<Option<TicketNumber>> {
        Ok(self.message_ticket.get(message_id).copied())
    }
    fn participants(&self, ticket: TicketNumber) -> anyhow::Result<Option<Vec<String>>> {
        Ok(self.tickets.get(&ticket.0).map(|t| {
            let taking_part = t.people.iter().filter(|(_, (_, r))| r.takes_part());
            taking_part.map(|(a, _)| a.clone()).collect()
        }))
    }
}

impl IngestLookup for Desk {
    fn next_ticket_number(&self) -> anyhow::Result<TicketNumber> {
        Ok(TicketNumber(self.highest + 1))
    }
    fn ticket_info(&self, ticket: TicketNumber) -> anyhow::Result<Option<TicketInfo>> {
        Ok(self.tickets.get(&ticket.0).map(|t| TicketInfo {
            number: ticket,
            subject: t.subject.clone(),
            status: t.status,
            requester: t.requester.clone(),
            cc: t
                .people
                .values()
                .filter(|(_, r)| *r == Role::Cc)
                .map(|(m, _)| m.clone())
                .collect(),
            customer_message_ids: t.customer_message_ids.clone(),
            last_activity_at: t.last_activity_at,
            queue: t.queue.clone(),
        }))
    }
    fn automatic_mails_since(&self, address: &str, since: DateTime<Utc>) -> anyhow::Result<u32> {
        let sent = self
            .automatic
            .get(address)
            .map_or(0, |times| times.iter().filter(|at| **at >= since).count());
        Ok(u32::try_from(sent)?)
    }
}
