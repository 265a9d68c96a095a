//! Respond: the customer side of ingest. After apply has decided where a
//! customer's (or a machine's) mail goes, this composes what goes out: the
//! confirmation of a new ticket and the agents' notifications, or the
//! polite note for a mail too large to take. Pure.
//!
//! The agents hear of a person's mail and of list mail (issue 12 §4); a
//! list gets nothing back (apply never confirms it).

use chrono::{DateTime, Duration, Utc};

use crate::domain::{Role, TicketNumber};
use crate::ingest::apply::{
    self, AccessLink, Decision, IngestLookup, NewTicket, Plan, TicketChange,
};
use crate::ingest::classify::{self, Classification};
use crate::ingest::parse::{self, Mailbox, ParsedMail};
use crate::ingest::thread::{self, Threading};
use crate::ingest::{Outcome, Pipeline, PreparedMail, reply_thread};
use crate::outbound::compose::{self, OutgoingMail};
use crate::outbound::notify;
use crate::tokens::{Purpose, link_token, random_token};

/// A customer's or a machine's mail (anything but an authenticated agent).
pub fn customer_mail(
    p: &Pipeline,
    prepared: &PreparedMail,
    threading: Threading,
    lookup: &impl IngestLookup,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let (mail, class) = (&prepared.mail, &prepared.class);
    let signed_for = thread::customer_tokens(mail, &p.signer);
    let decision = apply::decide(
        prepared,
        threading,
        lookup,
        link_token(now)?,
        now,
        p.policy,
        &signed_for,
    )?;
    let (mut ticket, message, participants, confirm) = match decision {
        Decision::Duplicate => return Ok(Outcome::Duplicate),
        Decision::Quarantine { reason } => {
            return Ok(Outcome::Quarantine {
                reason,
                dedup_key: mail.dedup_key(),
                notice: None,
            });
        }
        Decision::Ignored { reason } => {
            return Ok(Outcome::Ignored {
                reason,
                dedup_key: mail.dedup_key(),
            });
        }
        Decision::Store {
            ticket,
            message,
            participants,
            confirm,
        } => (ticket, message, participants, confirm),
    };
    if let TicketChange::Create(new) = &mut ticket {
        new.queue = p.queue.clone();
    }
    let participants = without_ourselves(p, participants);
    let mut outgoing = Vec::new();
    let mut links = Vec::new();
    if let TicketChange::Create(new) = &ticket {
        links.push(AccessLink::Ticket {
            token: new.access_token.clone(),
            ticket: new.number,
        });
        if confirm {
            outgoing.push(confirmation(p, mail, new, &message.text, &mut links, now)?);
        }
    }
    use crate::domain::MessageKind;
    if matches!(message.kind, MessageKind::Customer | MessageKind::List) {
        let people = people_after(&ticket, &message, &participants, mail, lookup)?;
        let about = About {
            ticket: ticket.number(),
            subject: &people.subject,
            customer: &message.from,
            requester: &people.requester,
            cc: &people.cc,
            proposed_cc: &people.proposed,
            text: &message.text,
            status: people.status,
            is_new: matches!(ticket, TicketChange::Create(_)),
        };
        outgoing.extend(notifications(
            p,
            &about,
            reply_thread(mail),
            &mut links,
            now,
        )?);
    }
    Ok(Outcome::Stored(Box::new(Plan {
        dedup_key: mail.dedup_key(),
        ticket,
        participants,
        removed_participants: Vec::new(),
        message: *message,
        attachments: mail.attachments.clone(),
        outgoing,
        links,
        failed_delivery: failed_delivery(class),
    })))
}

/// A bounce marks the delivery it reports on as failed.
fn failed_delivery(class: &Classification) -> Option<apply::FailedDelivery> {
    match &class.kind {
        classify::MailKind::Bounce(info) if !info.original_message_ids.is_empty() => {
            Some(apply::FailedDelivery {
                message_ids: info.original_message_ids.clone(),
                recipients: info.failed_recipients.clone(),
                status: info.status.clone(),
            })
        }
        _ => None,
    }
}

fn confirmation(
    p: &Pipeline,
    mail: &ParsedMail,
    ticket: &NewTicket,
    received_text: &str,
    links: &mut Vec<AccessLink>,
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let message_id = p.message_id(ticket.number, Purpose::Confirmation, None)?;
    let link = format!("{}/t/{}", p.public_url, ticket.access_token);
    let requester_link = p.requester_link(&ticket.requester.address, links, now)?;
    let c = compose::Confirmation {
        ticket: ticket.number,
        subject: &ticket.subject,
        to: &ticket.requester,
        received_text,
        status_link: &link,
        requester_link: &requester_link,
        follows: ticket.follows,
        message_id: &message_id,
        thread: reply_thread(mail),
    };
    compose::confirmation(&p.identity, &c, now)
}

/// The people of a ticket as they will be once this mail is stored.
struct People {
    subject: String,
    requester: Mailbox,
    /// The Cc's after this mail (the stored ones and those it adds).
    cc: Vec<Mailbox>,
    /// The Cc's this mail only proposes (not already taking part).
    proposed: Vec<Mailbox>,
    /// The ticket's status once this mail is stored.
    status: crate::domain::Status,
}

/// Who the ticket's people are after this mail: read before its
/// participants are written, so this mail's own are added here (the
/// agents' notification would otherwise show the Cc list of before).
fn people_after(
    ticket: &TicketChange,
    message: &apply::InboundMessage,
    participants: &[(Mailbox, Role)],
    mail: &ParsedMail,
    lookup: &impl IngestLookup,
) -> anyhow::Result<People> {
    use crate::domain::Status;
    let (requester, mut cc, subject, stored) = match ticket {
        TicketChange::Create(new) => (
            new.requester.clone(),
            Vec::new(),
            new.subject.clone(),
            Status::New,
        ),
        TicketChange::Update { number, .. } => match lookup.ticket_info(*number)? {
            Some(info) => (info.requester, info.cc, info.subject, info.status),
            None => (
                message.from.clone(),
                Vec::new(),
                mail.subject.clone(),
                Status::Open,
            ),
        },
    };
    let status = match ticket {
        TicketChange::Update {
            status: Some(s), ..
        } => *s,
        _ => stored,
    };
    let mut proposed: Vec<Mailbox> = Vec::new();
    for (person, role) in participants {
        let known = |list: &[Mailbox]| list.iter().any(|m| m.address == person.address);
        if person.address == requester.address || known(&cc) {
            continue;
        }
        match role {
            Role::Cc => cc.push(person.clone()),
            Role::Proposed if !known(&proposed) => proposed.push(person.clone()),
            _ => {}
        }
    }
    Ok(People {
        subject,
        requester,
        cc,
        proposed,
        status,
    })
}

/// What the agents are told about.
struct About<'a> {
    ticket: TicketNumber,
    subject: &'a str,
    customer: &'a Mailbox,
    requester: &'a Mailbox,
    cc: &'a [Mailbox],
    proposed_cc: &'a [Mailbox],
    text: &'a str,
    status: crate::domain::Status,
    is_new: bool,
}

/// One notification per agent (each with a token signed for that agent),
/// or one to the agents' list.
fn notifications(
    p: &Pipeline,
    about: &About,
    thread: compose::ThreadHeaders,
    links: &mut Vec<AccessLink>,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<OutgoingMail>> {
    let recipients: Vec<(&str, Option<&str>)> = match &p.agent_list {
        Some(list) => vec![(list.as_str(), None)],
        None => p
            .agents
            .iter()
            .map(|a| (a.as_str(), Some(a.as_str())))
            .collect(),
    };
    let mut out = Vec::new();
    for (address, signed_for) in recipients {
        // The agents' addresses are checked when the settings are read;
        // one that is not valid gets no notification rather than none
        // of them getting theirs.
        let Ok(address) = crate::domain::Address::parse(address) else {
            tracing::warn!("The agent address {address} is not valid: no notification sent to it");
            continue;
        };
        let message_id = p.message_id(about.ticket, Purpose::Notification, signed_for)?;
        let link = p.ticket_link(about.ticket, links, now)?;
        let n = notify::Notification {
            ticket: about.ticket,
            subject: about.subject,
            agent: Mailbox::new(address, None),
            customer: about.customer,
            requester: about.requester,
            cc: about.cc,
            proposed_cc: about.proposed_cc,
            new_text: about.text,
            status: about.status,
            status_link: &link,
            is_new_ticket: about.is_new,
            message_id: &message_id,
            reply_to: p.reply_address(about.ticket, signed_for)?,
            thread: thread.clone(),
        };
        out.push(notify::notification(&p.identity, &n, now)?);
    }
    Ok(out)
}

/// A polite note for a mail of `size` bytes, too large to take, unless
/// its sender is a machine or has had enough automatic mail.
pub fn oversize_notice(
    p: &Pipeline,
    raw: &[u8],
    size: u64,
    lookup: &impl IngestLookup,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<Box<OutgoingMail>>> {
    // Only the header section is read, so a huge body costs nothing.
    let Ok(head) = parse::parse(&raw[..header_end(raw)]) else {
        return Ok(None);
    };
    // From the address it was written to, as a new ticket's queue is found.
    let queue = crate::ingest::queues::for_new_ticket(&p.queues, &head, None)
        .map_or_else(|| p.queue.clone(), |q| q.name.clone());
    let p = &p.in_queue(&queue);
    let class = classify::classify(&head, &p.own);
    let Some(from) = head.from.clone() else {
        return Ok(None);
    };
    let sent = lookup.automatic_mails_since(&from.address, now - Duration::hours(1))?;
    if class.suppress_auto_reply || sent >= p.policy.auto_replies_per_hour {
        return Ok(None);
    }
    let message_id = format!("pd.notice.{}@{}", random_token()?, p.domain);
    let note = compose::refusal(
        &p.identity,
        &from,
        &head.subject,
        (size, p.max_message_bytes),
        &message_id,
        reply_thread(&head),
        now,
    )?;
    Ok(Some(Box::new(note)))
}

/// Our own addresses and the agents are never Cc participants, nor
/// proposed ones.
fn without_ourselves(p: &Pipeline, participants: Vec<(Mailbox, Role)>) -> Vec<(Mailbox, Role)> {
    participants
        .into_iter()
        .filter(|(m, role)| !matches!(role, Role::Cc | Role::Proposed) || !is_ours(p, &m.address))
        .collect()
}

/// Whether `address` is ours: a queue's support address, an agent of any
/// queue, the agents' list, or a plus-address of a support address.
pub(crate) fn is_ours(p: &Pipeline, address: &str) -> bool {
    p.own.addresses.iter().any(|a| a == address)
        || p.agents.iter().any(|a| a == address)
        || p.queues
            .iter()
            .any(|q| q.agents.iter().any(|a| a == address))
        || p.agent_list.as_deref() == Some(address)
        || is_our_plus_address(address, &p.identity.address)
        || p.queues
            .iter()
            .any(|q| is_our_plus_address(address, &q.identity.address))
}

fn is_our_plus_address(address: &str, support: &str) -> bool {
    match (address.split_once('@'), support.split_once('@')) {
        (Some((local, domain)), Some((s_local, s_domain))) => {
            domain == s_domain && local.starts_with(&format!("{s_local}+"))
        }
        _ => false,
    }
}

/// The offset just past the blank line that ends the header section.
fn header_end(raw: &[u8]) -> usize {
    let limit = raw.len().min(256 * 1024);
    let head = &raw[..limit];
    let lf = head.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(limit),
    }
}

#[cfg(test)]
#[path = "respond_tests.rs"]
mod tests;
