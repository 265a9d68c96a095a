//! Notify: the texts of the mails around agents' work: the notification
//! an agent gets for a customer's mail, the agent's reply relayed to the
//! customer, the status email, and the answer to a refused command. Built
//! on [`compose::build`]; pure, like it.

use chrono::{DateTime, Utc};

use crate::domain::{MessageKind, Status, TicketNumber};
use crate::ingest::agent::COMMAND_HELP;
use crate::ingest::parse::Mailbox;
use crate::outbound::compose::{self, Draft, Identity, OutgoingMail, ThreadHeaders};

/// What an agent is told about a customer's mail.
#[derive(Debug, Clone)]
pub struct Notification<'a> {
    pub ticket: TicketNumber,
    pub subject: &'a str,
    pub agent: Mailbox,
    pub customer: &'a Mailbox,
    pub requester: &'a Mailbox,
    pub cc: &'a [Mailbox],
    pub new_text: &'a str,
    pub status_link: &'a str,
    pub is_new_ticket: bool,
    pub message_id: &'a str,
    pub reply_to: String,
    pub thread: ThreadHeaders,
}

pub fn notification(
    me: &Identity,
    n: &Notification,
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let what = if n.is_new_ticket {
        "opened a new ticket"
    } else {
        "wrote again"
    };
    let cc = if n.cc.is_empty() {
        "nobody".to_string()
    } else {
        n.cc.iter()
            .map(Mailbox::display)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "{customer} {what} (#{number}).\n\n{body}\n\n\
         ---\nRequester: {requester}\nCc: {cc}\nCustomer's page: {link}\n\
         Reply to this mail to answer the customer.\n{COMMAND_HELP}\n",
        customer = n.customer.display(),
        number = n.ticket,
        body = n.new_text.trim(),
        requester = n.requester.display(),
        link = n.status_link,
    );
    let draft = Draft {
        kind: MessageKind::Notification,
        auto_submitted: Some("auto-generated"),
        automatic_reply: false,
        from_name: me.name.clone(),
        to: vec![n.agent.clone()],
        reply_to: Some(n.reply_to.clone()),
        subject: me.tagged(n.subject, n.ticket),
        text,
        message_id: n.message_id,
        thread: n.thread.clone(),
    };
    compose::build(me, draft, now)
}

/// An agent's reply as the customer receives it.
#[derive(Debug, Clone)]
pub struct Reply<'a> {
    pub ticket: TicketNumber,
    pub subject: &'a str,
    pub agent_name: &'a str,
    pub to: Vec<Mailbox>,
    pub text: &'a str,
    pub status_link: &'a str,
    pub message_id: &'a str,
    pub reply_to: String,
    pub thread: ThreadHeaders,
}

pub fn reply(me: &Identity, r: &Reply, now: DateTime<Utc>) -> anyhow::Result<OutgoingMail> {
    let text = format!(
        "{}\n\n--\n{}\nYour request: {}\n",
        r.text.trim(),
        me.name,
        r.status_link
    );
    let draft = Draft {
        kind: MessageKind::Reply,
        auto_submitted: None,
        automatic_reply: false,
        from_name: format!("{} via {}", r.agent_name, me.name),
        to: r.to.clone(),
        reply_to: Some(r.reply_to.clone()),
        subject: format!("Re: {}", me.tagged(r.subject, r.ticket)),
        text,
        message_id: r.message_id,
        thread: r.thread.clone(),
    };
    compose::build(me, draft, now)
}

/// The short mail a customer gets when an agent changes the status.
#[derive(Debug, Clone)]
pub struct StatusChange<'a> {
    pub ticket: TicketNumber,
    pub subject: &'a str,
    pub status: Status,
    pub to: Vec<Mailbox>,
    pub status_link: &'a str,
    pub message_id: &'a str,
    pub reply_to: String,
    pub thread: ThreadHeaders,
}

pub fn status_change(
    me: &Identity,
    s: &StatusChange,
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let text = format!(
        "Your request #{number} is now {status}.\n{explanation}\n\n\
         Follow it here:\n{link}\n\n{name}\n",
        number = s.ticket,
        status = s.status,
        explanation = s.status.explanation(),
        link = s.status_link,
        name = me.name,
    );
    let draft = Draft {
        kind: MessageKind::Status,
        auto_submitted: Some("auto-generated"),
        automatic_reply: false,
        from_name: me.name.clone(),
        to: s.to.clone(),
        reply_to: Some(s.reply_to.clone()),
        subject: me.tagged(&format!("{} ({})", s.subject, s.status), s.ticket),
        text,
        message_id: s.message_id,
        thread: s.thread.clone(),
    };
    compose::build(me, draft, now)
}

/// The answer to an agent whose mail was not applied.
pub fn refused(
    me: &Identity,
    agent: &Mailbox,
    subject: &str,
    reasons: &[(String, String)],
    message_id: &str,
    thread: ThreadHeaders,
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let lines: Vec<String> = reasons
        .iter()
        .map(|(line, why)| format!("  {line}\n    → {why}"))
        .collect();
    let text = format!(
        "Nothing of your mail was applied or sent to the customer:\n\n{}\n\n\
         Fix the line and send the mail again.\n{COMMAND_HELP}\n",
        lines.join("\n")
    );
    let draft = Draft {
        kind: MessageKind::Notification,
        auto_submitted: Some("auto-replied"),
        automatic_reply: false,
        from_name: me.name.clone(),
        to: vec![agent.clone()],
        reply_to: None,
        subject: format!("Not applied: {subject}"),
        text,
        message_id,
        thread,
    };
    compose::build(me, draft, now)
}
