//! Apply: turns a classified, threaded mail into a [`Plan`]: what the store
//! writes (ticket change, participants, the message, attachments) and what
//! goes to the outbox. Pure: the facts come in through [`IngestLookup`],
//! the clock as `now`, the random link token as an argument.

use chrono::{DateTime, Duration, Utc};

use crate::domain::{MessageKind, Role, Status, TicketNumber};
use crate::ingest::classify::{Classification, MailKind};
use crate::ingest::parse::{Attachment, Mailbox, ParsedMail};
use crate::ingest::strip::strip_reply;
use crate::ingest::thread::{ThreadLookup, Threading};
use crate::outbound::compose::OutgoingMail;

/// What apply needs from the store beyond threading.
pub trait IngestLookup: ThreadLookup {
    /// The number the next new ticket gets.
    fn next_ticket_number(&self) -> anyhow::Result<TicketNumber>;
    /// A ticket's current status.
    fn ticket_status(&self, ticket: TicketNumber) -> anyhow::Result<Option<Status>>;
    /// How many automatic mails went to `address` since `since`.
    fn automatic_mails_since(&self, address: &str, since: DateTime<Utc>) -> anyhow::Result<u32>;
}

/// A new ticket to create.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub number: TicketNumber,
    pub subject: String,
    pub requester: Mailbox,
    /// The private link token in clear; the store keeps only its hash.
    pub access_token: String,
}

#[derive(Debug, Clone)]
pub enum TicketChange {
    Create(NewTicket),
    Update {
        number: TicketNumber,
        status: Option<Status>,
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
    pub participants: Vec<(Mailbox, Role)>,
    pub message: InboundMessage,
    pub attachments: Vec<Attachment>,
    pub outgoing: Vec<OutgoingMail>,
    /// Links handed out in the outgoing mail.
    pub links: Vec<AccessLink>,
}

/// What becomes of an inbound mail before any outgoing mail is composed.
#[derive(Debug, Clone)]
pub enum Decision {
    Duplicate,
    /// Kept, but on no ticket: its reason is shown in the quarantine.
    Quarantine {
        reason: String,
    },
    Store {
        ticket: TicketChange,
        message: InboundMessage,
        participants: Vec<(Mailbox, Role)>,
        /// Whether the sender gets a confirmation.
        confirm: bool,
    },
}

/// Decides what a mail does. `access_token` is used only for a new ticket.
pub fn decide(
    mail: &ParsedMail,
    class: &Classification,
    threading: Threading,
    lookup: &impl IngestLookup,
    access_token: String,
    now: DateTime<Utc>,
    auto_replies_per_hour: u32,
) -> anyhow::Result<Decision> {
    let Some(from) = mail.from.clone() else {
        return Ok(Decision::Quarantine {
            reason: "the mail has no From address".to_string(),
        });
    };
    let kind = inbound_kind(&class.kind);
    let (change, reason) = match threading {
        Threading::Duplicate => return Ok(Decision::Duplicate),
        Threading::Existing { ticket, reason } => {
            let current = lookup.ticket_status(ticket)?.unwrap_or(Status::New);
            // Machines never change a ticket's status (rule 3).
            let status = (kind == MessageKind::Customer)
                .then(|| reopened(current))
                .filter(|s| *s != current);
            (
                TicketChange::Update {
                    number: ticket,
                    status,
                },
                reason,
            )
        }
        Threading::New { reason } => {
            if kind != MessageKind::Customer {
                return Ok(Decision::Quarantine {
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
            };
            (TicketChange::Create(ticket), reason)
        }
    };
    let is_new = matches!(change, TicketChange::Create(_));
    let confirm = is_new
        && !class.suppress_auto_reply
        && within_rate_limit(lookup, &from.address, now, auto_replies_per_hour)?;
    let stripped = strip_reply(&mail.text);
    let message = InboundMessage {
        message_id: mail.dedup_key(),
        kind,
        from: from.clone(),
        subject: mail.subject.clone(),
        date: mail.date.unwrap_or(now),
        text: stripped.new_text,
        quoted: stripped.quoted,
        thread_reason: reason.to_string(),
        classification: class.reason.clone(),
    };
    Ok(Decision::Store {
        participants: participants(mail, &from, kind, is_new),
        ticket: change,
        message,
        confirm,
    })
}

/// The status a customer's new mail gives a ticket.
fn reopened(current: Status) -> Status {
    match current {
        Status::Closed => Status::Open,
        other => other.after_customer_reply(),
    }
}

fn inbound_kind(kind: &MailKind) -> MessageKind {
    match kind {
        MailKind::Human => MessageKind::Customer,
        MailKind::AutoReply | MailKind::OwnMail => MessageKind::AutoReply,
        MailKind::Bounce(_) => MessageKind::Bounce,
        MailKind::List => MessageKind::List,
    }
}

/// The requester (for a new ticket) and everyone a person put in Cc.
fn participants(
    mail: &ParsedMail,
    from: &Mailbox,
    kind: MessageKind,
    is_new: bool,
) -> Vec<(Mailbox, Role)> {
    if kind != MessageKind::Customer {
        return Vec::new();
    }
    let mut out = Vec::new();
    if is_new {
        out.push((from.clone(), Role::Requester));
    }
    out.extend(mail.cc.iter().cloned().map(|m| (m, Role::Cc)));
    out
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
