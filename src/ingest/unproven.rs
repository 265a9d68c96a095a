//! Unproven: a mail whose From is an agent's address but that does not
//! authenticate (it answers no token of ours signed for that agent, or one
//! older than `support.agent_token_days`, and the trusted server did not
//! vouch for it). It may be a stranger's forgery or an agent answering an
//! old notification; either way it runs no command, relays nothing,
//! changes no status and is never shown to the customer: it is kept as an
//! internal note on the ticket it threads to (kept as ignored, apart
//! from the quarantine, when it names none), and the agent is answered
//! with a mail carrying a fresh token, so that a reply to that gets the
//! text through (rule 4). Pure.

use chrono::{DateTime, Duration, Utc};

use crate::domain::{MessageKind, TicketNumber};
use crate::ingest::agent::AgentAuth;
use crate::ingest::apply::{InboundMessage, IngestLookup, Plan, TicketChange};
use crate::ingest::thread::Threading;
use crate::ingest::{Outcome, Pipeline, PreparedMail, reply_thread};
use crate::outbound::compose::OutgoingMail;
use crate::outbound::notify;
use crate::tokens::Purpose;

/// A human mail from an agent's address that did not authenticate;
/// `stale` is the authentication it had, had its token not been too old.
pub fn agent_address_mail(
    p: &Pipeline,
    prepared: &PreparedMail,
    threading: Threading,
    stale: Option<&AgentAuth>,
    lookup: &impl IngestLookup,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let mail = &prepared.mail;
    let Some(agent) = sender(prepared).cloned() else {
        anyhow::bail!("an agent's mail without a From address");
    };
    let why = match stale {
        Some(_) => format!(
            "it answers a notification of ours older than {} days",
            p.agent_token_days
        ),
        None => "it answers no notification of ours, and the receiving server did not vouch \
                 for it (DKIM/SPF)"
            .to_string(),
    };
    let (ticket, reason) = match (&threading, stale.and_then(|s| s.ticket)) {
        (_, Some(ticket)) => (
            Some(ticket),
            "the ticket of the old notification".to_string(),
        ),
        (Threading::Existing { ticket, reason }, None) => (Some(*ticket), reason.to_string()),
        _ => (None, String::new()),
    };
    let info = match ticket {
        Some(t) => lookup.ticket_info(t)?,
        None => None,
    };
    let Some(info) = info else {
        return Ok(Outcome::Ignored {
            reason: format!("a mail from an agent's address that names no ticket, and {why}"),
            dedup_key: mail.dedup_key(),
        });
    };
    // The ticket's queue answers (the old token may name another ticket
    // than the one the mail threads to).
    let p = &p.in_queue(&info.queue);
    let notice = answer(p, prepared, info.number, &why, lookup, now)?;
    let stripped = prepared.stripped();
    let plan = Plan {
        dedup_key: mail.dedup_key(),
        ticket: TicketChange::Update {
            number: info.number,
            status: None,
            assignee: None,
        },
        participants: Vec::new(),
        removed_participants: Vec::new(),
        message: InboundMessage {
            message_id: mail.dedup_key(),
            kind: MessageKind::Note,
            from: agent,
            subject: mail.subject.clone(),
            date: mail.date.unwrap_or(now),
            text: stripped.new_text.clone(),
            quoted: stripped.quoted.clone(),
            thread_reason: format!("{reason}; from an agent's address but not proven: {why}"),
            classification: "not authenticated as the agent: kept as a note, nothing applied"
                .to_string(),
        },
        attachments: mail.attachments.clone(),
        outgoing: notice.into_iter().collect(),
        links: Vec::new(),
        failed_delivery: None,
    };
    Ok(Outcome::Stored(Box::new(plan)))
}

/// The answer to the agent, with a fresh token for the ticket, unless the
/// address has had its share of automatic mail this hour.
fn answer(
    p: &Pipeline,
    prepared: &PreparedMail,
    ticket: TicketNumber,
    why: &str,
    lookup: &impl IngestLookup,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<OutgoingMail>> {
    let mail = &prepared.mail;
    let Some(agent) = sender(prepared) else {
        return Ok(None);
    };
    let sent = lookup.automatic_mails_since(agent.address.as_str(), now - Duration::hours(1))?;
    if sent >= p.policy.auto_replies_per_hour {
        return Ok(None);
    }
    let address = agent.address.as_str();
    let message_id = p.message_id(ticket, Purpose::Notification, Some(address))?;
    let u = notify::Unproven {
        ticket,
        agent,
        subject: &mail.subject,
        why,
        message_id: &message_id,
        reply_to: p.reply_address(ticket, Some(address))?,
        thread: reply_thread(mail),
    };
    Ok(Some(notify::unproven(&p.identity, &u, now)?))
}

/// The agent's address the mail came from: the From, or the person our
/// own group alias names behind its rewritten From (as classify reads it).
fn sender(prepared: &PreparedMail) -> Option<&crate::ingest::parse::Mailbox> {
    prepared
        .class
        .person
        .as_ref()
        .or(prepared.mail.from.as_ref())
}
