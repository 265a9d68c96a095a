//! Relay: the agent side of ingest. An authenticated agent's mail becomes
//! a reply relayed to the customer (From "Alice via Support", quotes and
//! signature removed, threaded into the customer's own thread), an internal
//! note, a status change with its status email, a Cc added or removed
//! (`#cc`, `#uncc`), or, when a command line is refused, an answer to the
//! agent and nothing else. The ticket's queue writes what goes out, and
//! only that queue's agents act on it: another queue's agent is answered
//! as for a refused command. Pure.

use chrono::{DateTime, Utc};

use crate::domain::{MessageKind, Role, Status, TicketNumber};
use crate::ingest::agent::{AgentAuth, AgentMail, Command, read_commands};
use crate::ingest::apply::{
    AccessLink, InboundMessage, IngestLookup, Plan, TicketChange, TicketInfo,
};
use crate::ingest::parse::{Mailbox, ParsedMail};
use crate::ingest::respond::is_ours;
use crate::ingest::{Outcome, Pipeline, PreparedMail, reply_thread};
use crate::outbound::compose::{OutgoingAttachment, OutgoingMail, ThreadHeaders};
use crate::outbound::{notify, sanitize};
use crate::tokens::Purpose;

/// An authenticated agent's mail.
pub fn agent_mail(
    p: &Pipeline,
    prepared: &PreparedMail,
    auth: AgentAuth,
    lookup: &impl IngestLookup,
    now: DateTime<Utc>,
) -> anyhow::Result<Outcome> {
    let mail = &prepared.mail;
    let agent = Mailbox::parse(
        &auth.agent,
        mail.from.as_ref().and_then(|m| m.name.as_deref()),
    )?;
    let ticket = auth.ticket.or_else(|| {
        p.identity
            .tag
            .find(&mail.subject)
            .map(|n| TicketNumber(n as i64))
    });
    let info = match ticket {
        Some(t) => lookup.ticket_info(t)?,
        None => None,
    };
    let Some(info) = info else {
        let reasons = vec![(
            mail.subject.clone(),
            "this mail names no ticket of ours: reply to a notification, or keep the [Ticket #N] tag".to_string(),
        )];
        let notice = refusal(p, mail, &agent, &reasons, now)?;
        return Ok(Outcome::Quarantine {
            reason: format!("an agent's mail ({}) that names no ticket", auth.how),
            dedup_key: mail.dedup_key(),
            notice: Some(Box::new(notice)),
        });
    };
    // The ticket's queue answers; only its agents act on its tickets.
    let p = &p.in_queue(&info.queue);
    let stripped = prepared.stripped().clone();
    let mut read = read_commands(&stripped.new_text, &p.agents);
    refuse_people(p, &info, &mut read);
    if !p.agents.iter().any(|a| a.eq_ignore_ascii_case(&auth.agent)) {
        read.refused.push((
            format!("ticket #{}", info.number),
            format!(
                "you are not an agent of its queue `{}`: nothing was applied and nothing \
                 went to the customer",
                p.queue
            ),
        ));
    }
    let mut plan = Plan {
        dedup_key: mail.dedup_key(),
        ticket: TicketChange::Update {
            number: info.number,
            status: None,
            assignee: None,
        },
        participants: vec![(agent.clone(), Role::Agent)],
        removed_participants: Vec::new(),
        message: InboundMessage {
            message_id: mail.dedup_key(),
            kind: MessageKind::Note,
            from: agent.clone(),
            subject: mail.subject.clone(),
            date: mail.date.unwrap_or(now),
            text: read.text.clone(),
            quoted: stripped.quoted,
            thread_reason: format!("an agent's mail, authenticated by {}", auth.how),
            classification: "agent".to_string(),
        },
        attachments: mail.attachments.clone(),
        outgoing: Vec::new(),
        links: Vec::new(),
        failed_delivery: None,
    };
    if !read.refused.is_empty() {
        plan.message.text = stripped.new_text;
        plan.message.classification = "agent mail with a refused command: nothing applied".into();
        plan.outgoing
            .push(refusal(p, mail, &agent, &read.refused, now)?);
        return Ok(Outcome::Stored(Box::new(plan)));
    }
    apply_commands(
        p,
        &info,
        &agent,
        &read,
        mail.html.as_deref(),
        &mut plan,
        now,
    )?;
    Ok(Outcome::Stored(Box::new(plan)))
}

/// The reply (unless a note), the status change and the assignment.
/// `html` is the agent's HTML body, if their mail had one.
fn apply_commands(
    p: &Pipeline,
    info: &TicketInfo,
    agent: &Mailbox,
    read: &AgentMail,
    html: Option<&str>,
    plan: &mut Plan,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let relays = !read.is_note() && !read.text.is_empty();
    let commanded = read.status().filter(|s| *s != info.status);
    let status =
        commanded.or_else(|| (relays && info.status != Status::Open).then_some(Status::Open));
    plan.ticket = TicketChange::Update {
        number: info.number,
        status,
        assignee: read.assignee().map(str::to_string),
    };
    let to = recipients_after(info, read, plan);
    let thread = customer_thread(info);
    if relays {
        plan.message.kind = MessageKind::Agent;
        let link = p.ticket_link(info.number, &mut plan.links, now)?;
        let message_id = p.message_id(info.number, Purpose::Reply, None)?;
        let name = agent
            .name
            .clone()
            .unwrap_or_else(|| local_part(&agent.address));
        // The agent's own HTML where it says what the text part says; the
        // files go along (stored once on the ticket, from the agent's mail).
        let relayed = html.and_then(|h| sanitize::relay_html(h, &read.text));
        let attachments: Vec<OutgoingAttachment> =
            sanitize::relayed_files(html, relayed.as_deref(), &plan.attachments)
                .into_iter()
                .map(OutgoingAttachment::from)
                .collect();
        let reply = notify::Reply {
            ticket: info.number,
            subject: &info.subject,
            agent_name: &name,
            to: to.clone(),
            text: &read.text,
            html: relayed.as_deref(),
            attachments: &attachments,
            max_bytes: p.max_message_bytes,
            status_link: &link,
            message_id: &message_id,
            reply_to: p.reply_address(info.number, None)?,
            thread: thread.clone(),
        };
        plan.outgoing.push(notify::reply(&p.identity, &reply, now)?);
    }
    if let Some(new_status) = commanded {
        plan.outgoing.push(status_mail(
            p,
            info,
            new_status,
            to,
            thread,
            &mut plan.links,
            now,
        )?);
    }
    Ok(())
}

/// `#cc` and `#uncc` into the plan, and who the customer's mail goes to
/// after them: the requester and the Cc's, less those removed, with those
/// added.
fn recipients_after(info: &TicketInfo, read: &AgentMail, plan: &mut Plan) -> Vec<Mailbox> {
    let removed = read.cc_removed();
    let mut to: Vec<Mailbox> = std::iter::once(info.requester.clone())
        .chain(
            info.cc
                .iter()
                .filter(|m| !removed.contains(&m.address))
                .cloned(),
        )
        .collect();
    for address in read.cc_added() {
        let cc = Mailbox::new(address, None);
        if !to.iter().any(|m| m.address == cc.address) {
            to.push(cc.clone());
        }
        plan.participants.push((cc, Role::Cc));
    }
    plan.removed_participants = removed;
    to
}

/// `#cc` of one of our own addresses, and `#uncc` of the requester, are
/// refused (then nothing of the mail is applied).
fn refuse_people(p: &Pipeline, info: &TicketInfo, read: &mut AgentMail) {
    for command in &read.commands {
        let refusal = match command {
            Command::Cc(a) if is_ours(p, a) => (
                format!("#cc {a}"),
                format!("{a} is one of our own addresses"),
            ),
            Command::Uncc(a) if *a == info.requester.address => (
                format!("#uncc {a}"),
                format!("{a} is the requester of #{}: they stay on it", info.number),
            ),
            _ => continue,
        };
        read.refused.push(refusal);
    }
}

/// The status email for a ticket (also used by the CLI and autoclose).
pub fn status_mail(
    p: &Pipeline,
    info: &TicketInfo,
    status: Status,
    to: Vec<Mailbox>,
    thread: ThreadHeaders,
    links: &mut Vec<AccessLink>,
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let link = p.ticket_link(info.number, links, now)?;
    let message_id = p.message_id(info.number, Purpose::Status, None)?;
    let change = notify::StatusChange {
        ticket: info.number,
        subject: &info.subject,
        status,
        to,
        status_link: &link,
        message_id: &message_id,
        reply_to: p.reply_address(info.number, None)?,
        thread,
    };
    notify::status_change(&p.identity, &change, now)
}

/// Threads our mail into the customer's own thread: In-Reply-To their
/// latest mail, References the last ten.
pub fn customer_thread(info: &TicketInfo) -> ThreadHeaders {
    let ids = &info.customer_message_ids;
    ThreadHeaders {
        in_reply_to: ids.last().cloned(),
        references: ids[ids.len().saturating_sub(10)..].to_vec(),
    }
}

fn refusal(
    p: &Pipeline,
    mail: &ParsedMail,
    agent: &Mailbox,
    reasons: &[(String, String)],
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let message_id = format!("pd.refused.{}@{}", crate::tokens::random_token()?, p.domain);
    notify::refused(
        &p.identity,
        agent,
        &mail.subject,
        reasons,
        &message_id,
        reply_thread(mail),
        now,
    )
}

fn local_part(address: &str) -> String {
    address.split('@').next().unwrap_or(address).to_string()
}
