//! Apply: turns a classified, threaded mail into a [`Plan`]: what the store
//! writes (ticket change, participants, the message, attachments) and what
//! goes to the outbox. Pure: the facts come in through [`IngestLookup`],
//! the clock as `now`, the random link token as an argument.
//!
//! Who a Cc adds (issue 17): on a new ticket, the Cc's of its first mail
//! (the requester chose them); on a follow-up, only when the mail is the
//! requester's own, shown by a token we signed for this ticket; any other
//! Cc is only *proposed* to the agents, who add it with `#cc`.
//!
//! List mail (issue 12 §4) makes a ticket like a person's mail, threaded by
//! its references, but is confirmed to nobody, never changes a ticket's
//! status and adds only its writer (never the list in Cc). Other machine
//! mail that answers no ticket (bounces, auto-replies, bulk mail) makes
//! none. A mail through our own group alias counts as the person's.

mod age;
mod kinds;

use chrono::{DateTime, Duration, Utc};

use crate::domain::{Address, MessageKind, Role, Status, TicketNumber};
use crate::ingest::PreparedMail;
use crate::ingest::classify::{BounceInfo, MailKind};
use crate::ingest::parse::{Attachment, Mailbox, ParsedMail};
use crate::ingest::thread::{ThreadLookup, ThreadReason, Threading};
use crate::outbound::compose::OutgoingMail;
use kinds::{inbound_kind, makes_a_ticket};

/// What apply needs from the store beyond threading.
pub trait IngestLookup: ThreadLookup {
    /// The number the next new ticket gets.
    fn next_ticket_number(&self) -> anyhow::Result<TicketNumber>;
    /// What a follow-up needs to know of its ticket.
    fn ticket_info(&self, ticket: TicketNumber) -> anyhow::Result<Option<TicketInfo>>;
    /// The queue of a ticket.
    fn ticket_queue(&self, ticket: TicketNumber) -> anyhow::Result<Option<String>> {
        Ok(self.ticket_info(ticket)?.map(|info| info.queue))
    }
    /// How many automatic mails went to `address` since `since` (the
    /// store keeps two hours of them: the limit looks back one).
    fn automatic_mails_since(&self, address: &str, since: DateTime<Utc>) -> anyhow::Result<u32>;
}

/// An existing ticket, as a follow-up sees it.
#[derive(Debug, Clone)]
pub struct TicketInfo {
    pub number: TicketNumber,
    pub subject: String,
    pub status: Status,
    pub requester: Mailbox,
    pub cc: Vec<Mailbox>,
    /// Message-IDs of the customers' mails on it, oldest first.
    pub customer_message_ids: Vec<String>,
    pub last_activity_at: DateTime<Utc>,
    /// The queue the ticket belongs to.
    pub queue: String,
}

/// The limits and windows apply works within.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub auto_replies_per_hour: u32,
    pub reopen_days: f64,
    /// A new ticket's mail older than this gets no confirmation
    /// (`limits.confirm_max_age_hours`).
    pub confirm_max_age_hours: f64,
}

/// A new ticket to create.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub number: TicketNumber,
    pub subject: String,
    pub requester: Mailbox,
    /// The private link token in clear; the store keeps only its hash.
    pub access_token: String,
    /// The closed ticket this one continues, past its reopen window.
    pub follows: Option<TicketNumber>,
    /// Its queue: set by the caller of [`decide`], which knows it (empty
    /// here).
    pub queue: String,
}

#[derive(Debug, Clone)]
pub enum TicketChange {
    Create(NewTicket),
    Update {
        number: TicketNumber,
        status: Option<Status>,
        assignee: Option<String>,
    },
}

impl TicketChange {
    pub fn number(&self) -> TicketNumber {
        match self {
            TicketChange::Create(t) => t.number,
            TicketChange::Update { number, .. } => *number,
        }
    }
}

/// The inbound message as stored.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub message_id: String,
    pub kind: MessageKind,
    pub from: Mailbox,
    pub subject: String,
    pub date: DateTime<Utc>,
    pub text: String,
    pub quoted: String,
    pub thread_reason: String,
    pub classification: String,
}

/// A private link to store (hashed): to one ticket, or to all tickets of
/// one requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLink {
    Ticket { token: String, ticket: TicketNumber },
    Requester { token: String, address: String },
}

/// Everything one mail changes, written in one transaction.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dedup_key: String,
    pub ticket: TicketChange,
    /// Added, or promoted from `proposed` to `cc` (never demoted).
    pub participants: Vec<(Mailbox, Role)>,
    /// Cc's (or proposed Cc's) an agent removed with `#uncc`.
    pub removed_participants: Vec<Address>,
    pub message: InboundMessage,
    pub attachments: Vec<Attachment>,
    pub outgoing: Vec<OutgoingMail>,
    /// Links handed out in the outgoing mail.
    pub links: Vec<AccessLink>,
    /// A bounce's report on a mail of ours.
    pub failed_delivery: Option<FailedDelivery>,
}

/// What a bounce says about one of our mails.
#[derive(Debug, Clone)]
pub struct FailedDelivery {
    pub message_ids: Vec<String>,
    pub recipients: Vec<String>,
    pub status: Option<String>,
}

/// What becomes of an inbound mail before any outgoing mail is composed.
#[derive(Debug, Clone)]
pub enum Decision {
    Duplicate,
    /// Kept, but on no ticket: it could not be processed; its reason is
    /// shown in the quarantine.
    Quarantine {
        reason: String,
    },
    /// Machine mail that answers no ticket: kept with its reason apart from
    /// the quarantine (`postdesk ignored list`), nothing sent.
    Ignored {
        reason: String,
    },
    Store {
        ticket: TicketChange,
        message: Box<InboundMessage>,
        participants: Vec<(Mailbox, Role)>,
        /// Whether the sender gets a confirmation.
        confirm: bool,
    },
}

/// Decides what a mail does. `access_token` is used only for a new ticket.
/// `signed_for` are the tickets named by customer tokens of ours that the
/// mail answers (see [`crate::ingest::thread::customer_tokens`]).
pub fn decide(
    prepared: &PreparedMail,
    threading: Threading,
    lookup: &impl IngestLookup,
    access_token: String,
    now: DateTime<Utc>,
    policy: Policy,
    signed_for: &[TicketNumber],
) -> anyhow::Result<Decision> {
    let (mail, class) = (&prepared.mail, &prepared.class);
    let Some(from) = class.person.clone().or_else(|| mail.from.clone()) else {
        return Ok(Decision::Quarantine {
            reason: "the mail has no From address".to_string(),
        });
    };
    let kind = inbound_kind(&class.kind);
    let threading = match (threading, &class.kind) {
        (Threading::New { .. }, MailKind::Bounce(info)) => bounce_threading(info, lookup)?,
        (t, _) => t,
    };
    // Whether the requester vouched for this mail with a token of ours for
    // this ticket: only then may its Cc's join an existing ticket.
    let mut vouched = false;
    let (change, reason) = match threading {
        Threading::Duplicate => return Ok(Decision::Duplicate),
        Threading::Existing { ticket, reason } => {
            let (change, reason, by_requester) = follow_up(
                mail,
                &from,
                kind,
                ticket,
                reason,
                lookup,
                access_token,
                now,
                policy,
            )?;
            vouched = by_requester && signed_for.contains(&ticket);
            (change, reason)
        }
        Threading::New { reason } => {
            if !makes_a_ticket(&class.kind) {
                return Ok(Decision::Ignored {
                    reason: format!(
                        "{} that answers no ticket: kept, nothing sent",
                        class.reason
                    ),
                });
            }
            let ticket = NewTicket {
                number: lookup.next_ticket_number()?,
                subject: mail.subject.clone(),
                requester: from.clone(),
                access_token,
                follows: None,
                queue: String::new(),
            };
            (TicketChange::Create(ticket), reason.to_string())
        }
    };
    let is_new = matches!(change, TicketChange::Create(_));
    // Checked before the rate limit: an old mail costs no lookup.
    let too_old = (is_new && !class.suppress_auto_reply)
        .then(|| age::too_old_to_confirm(mail, now, policy.confirm_max_age_hours))
        .flatten();
    let confirm = is_new
        && !class.suppress_auto_reply
        && too_old.is_none()
        && within_rate_limit(lookup, &from.address, now, policy.auto_replies_per_hour)?;
    let mut classification = with_dropped_note(&class.reason, &mail.dropped_addresses);
    if let Some(why) = too_old {
        classification = format!("{classification}; {why}");
    }
    let stripped = prepared.stripped();
    let message = InboundMessage {
        message_id: mail.dedup_key(),
        kind,
        from: from.clone(),
        subject: mail.subject.clone(),
        date: mail.date.unwrap_or(now),
        text: stripped.new_text.clone(),
        quoted: stripped.quoted.clone(),
        thread_reason: reason,
        classification,
    };
    Ok(Decision::Store {
        participants: participants(mail, &from, kind, is_new, vouched),
        ticket: change,
        message: Box::new(message),
        confirm,
    })
}

/// A mail on an existing ticket: an update, or a new ticket that follows
/// it past its reopen window. The flag says whether the mail's From is the
/// ticket's requester (with a token of ours, its Cc's may join).
#[allow(clippy::too_many_arguments)]
fn follow_up(
    mail: &ParsedMail,
    from: &Mailbox,
    kind: MessageKind,
    ticket: TicketNumber,
    reason: ThreadReason,
    lookup: &impl IngestLookup,
    access_token: String,
    now: DateTime<Utc>,
    policy: Policy,
) -> anyhow::Result<(TicketChange, String, bool)> {
    let info = lookup.ticket_info(ticket)?;
    let by_requester = info
        .as_ref()
        .is_some_and(|i| i.requester.address == from.address);
    match info {
        Some(closed) if kind == MessageKind::Customer && past_window(&closed, now, policy) => {
            let reason = format!(
                "ticket #{} was closed more than {} days ago: a new ticket that follows it",
                closed.number, policy.reopen_days
            );
            let ticket = NewTicket {
                number: lookup.next_ticket_number()?,
                subject: mail.subject.clone(),
                requester: from.clone(),
                access_token,
                follows: Some(closed.number),
                queue: String::new(),
            };
            Ok((TicketChange::Create(ticket), reason, by_requester))
        }
        info => {
            let current = info.map(|i| i.status).unwrap_or(Status::New);
            // Machines never change a ticket's status (rule 3).
            let status = (kind == MessageKind::Customer)
                .then(|| reopened(current))
                .filter(|s| *s != current);
            let change = TicketChange::Update {
                number: ticket,
                status,
                assignee: None,
            };
            Ok((change, reason.to_string(), by_requester))
        }
    }
}

/// A bounce goes to the ticket of the mail of ours it reports on.
fn bounce_threading(info: &BounceInfo, lookup: &impl IngestLookup) -> anyhow::Result<Threading> {
    for id in &info.original_message_ids {
        if let Some(ticket) = lookup.ticket_of_message(id)? {
            let reason = ThreadReason::KnownReference {
                message_id: id.clone(),
            };
            return Ok(Threading::Existing { ticket, reason });
        }
    }
    Ok(Threading::New {
        reason: ThreadReason::NewTicket,
    })
}

/// Whether a customer's mail to this ticket comes after its reopen window.
fn past_window(info: &TicketInfo, now: DateTime<Utc>, policy: Policy) -> bool {
    let window = Duration::milliseconds((policy.reopen_days * 86_400_000.0) as i64);
    info.status == Status::Closed && now - info.last_activity_at > window
}

/// The status a customer's new mail gives a ticket.
fn reopened(current: Status) -> Status {
    match current {
        Status::Closed => Status::Open,
        other => other.after_customer_reply(),
    }
}

/// The requester (for a new ticket) and everyone a person put in Cc: as
/// `cc` on a new ticket or when the requester `vouched` for the mail,
/// otherwise only as `proposed`.
fn participants(
    mail: &ParsedMail,
    from: &Mailbox,
    kind: MessageKind,
    is_new: bool,
    vouched: bool,
) -> Vec<(Mailbox, Role)> {
    let mut out = Vec::new();
    let person = kind == MessageKind::Customer;
    // A list ticket's writer is its requester; the list is nobody's Cc.
    if is_new && (person || kind == MessageKind::List) {
        out.push((from.clone(), Role::Requester));
    }
    if !person {
        return out;
    }
    let role = cc_role(is_new, vouched);
    out.extend(
        mail.cc
            .iter()
            .filter(|m| m.address != from.address)
            .cloned()
            .map(|m| (m, role)),
    );
    out
}

/// What a Cc of a customer's mail becomes. A follow-up's Cc is added only
/// when the mail answers a token we signed for this ticket and comes from
/// its requester. The token is per ticket, not per recipient: our mail
/// goes to the requester and the Cc's as one message with one Message-ID,
/// so a per-recipient signature would prove nothing more; a Cc who
/// answers can propose, not add.
pub fn cc_role(is_new: bool, vouched: bool) -> Role {
    if is_new || vouched {
        Role::Cc
    } else {
        Role::Proposed
    }
}

/// The classification, with the addresses parsing left out named, so an
/// agent sees why a Cc is missing.
fn with_dropped_note(reason: &str, dropped: &[String]) -> String {
    if dropped.is_empty() {
        return reason.to_string();
    }
    format!(
        "{reason}; left out as not valid addresses: {}",
        dropped.join(", ")
    )
}

fn within_rate_limit(
    lookup: &impl IngestLookup,
    address: &str,
    now: DateTime<Utc>,
    per_hour: u32,
) -> anyhow::Result<bool> {
    let sent = lookup.automatic_mails_since(address, now - Duration::hours(1))?;
    Ok(sent < per_hour)
}

#[cfg(test)]
mod list_tests;
#[cfg(test)]
mod tests;
