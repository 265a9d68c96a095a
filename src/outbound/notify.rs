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
    /// The ticket's Cc's as they are once this mail is stored.
    pub cc: &'a [Mailbox],
    /// Cc's of this mail that were not added (see `ingest::apply`).
    pub proposed_cc: &'a [Mailbox],
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
        people(n.cc)
    };
    let proposed = if n.proposed_cc.is_empty() {
        String::new()
    } else {
        format!(
            "Proposed Cc (not added; reply with #cc ADDRESS to add): {}\n",
            people(n.proposed_cc)
        )
    };
    let text = format!(
        "{customer} {what} (#{number}).\n\n{body}\n\n\
         ---\nRequester: {requester}\nCc: {cc}\n{proposed}Customer's page: {link}\n\
         Reply to this mail to answer the customer.\n{COMMAND_HELP}\n",
        customer = n.customer.display(),
        number = n.ticket,
        body = customer_text(n.new_text, n.status_link),
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

/// Bytes and lines of the customer's text a notification carries; the
/// page keeps the whole text.
const NOTIFIED_BYTES: usize = 8 * 1024;
const NOTIFIED_LINES: usize = 200;

/// The customer's new text for the agents, capped (a 24 MB mail made two
/// 24 MB notifications), with a pointer to the page where it is whole.
fn customer_text(text: &str, link: &str) -> String {
    match compose::excerpt(text.trim(), NOTIFIED_BYTES, NOTIFIED_LINES) {
        (head, false) => head.to_string(),
        (head, true) => format!(
            "{}\n\n… (the full text is on the page: {link})",
            head.trim_end()
        ),
    }
}

/// A list of people for a notification: the first few, then how many more
/// (a hostile mail can name thousands).
fn people(list: &[Mailbox]) -> String {
    const SHOWN: usize = 20;
    let mut text = list
        .iter()
        .take(SHOWN)
        .map(Mailbox::display)
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOWN {
        text.push_str(&format!(" and {} more", list.len() - SHOWN));
    }
    text
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

/// The answer to a mail from an agent's address that could not be proven
/// the agent's: what became of it, and a fresh token to reply to.
#[derive(Debug, Clone)]
pub struct Unproven<'a> {
    pub ticket: TicketNumber,
    pub agent: &'a Mailbox,
    pub subject: &'a str,
    /// Why it did not count as the agent's.
    pub why: &'a str,
    /// A Message-ID with a fresh token signed for the agent.
    pub message_id: &'a str,
    pub reply_to: String,
    pub thread: ThreadHeaders,
}

pub fn unproven(me: &Identity, u: &Unproven, now: DateTime<Utc>) -> anyhow::Result<OutgoingMail> {
    let text = format!(
        "Your mail \"{subject}\" came from your address but was not authenticated as yours: \
         {why}.\n\n\
         So nothing of it was sent to the customer and no command ran. It is kept as an \
         internal note on ticket #{number}.\n\n\
         If you wrote it, reply to this mail with your text and commands again: this mail \
         carries a fresh token, so a reply to it counts as yours.\n\n{COMMAND_HELP}\n",
        subject = compose::shorten(u.subject, 200),
        why = u.why,
        number = u.ticket,
    );
    let draft = Draft {
        kind: MessageKind::Notification,
        auto_submitted: Some("auto-replied"),
        // Counts toward the per-address limit: a stranger forging an
        // agent's From cannot make us flood the agent.
        automatic_reply: true,
        from_name: me.name.clone(),
        to: vec![u.agent.clone()],
        reply_to: Some(u.reply_to.clone()),
        subject: format!("Not applied: {}", u.subject),
        text,
        message_id: u.message_id,
        thread: u.thread.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::subject::SubjectTag;

    #[test]
    fn a_huge_customer_text_is_capped_with_a_pointer_to_the_page() {
        let me = Identity {
            address: "tickets@support.test".into(),
            name: "Support".into(),
            tag: SubjectTag::new("Ticket"),
            loop_value: "loop".into(),
        };
        let ann = Mailbox::parse("ann@customer.test", None).unwrap();
        let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        for new_text in [text, "w".repeat(24_000_000)] {
            let n = Notification {
                ticket: TicketNumber(1),
                subject: "s",
                agent: Mailbox::parse("alice@support.test", None).unwrap(),
                customer: &ann,
                requester: &ann,
                cc: &[],
                proposed_cc: &[],
                new_text: &new_text,
                status_link: "https://support.test/t/abc",
                is_new_ticket: true,
                message_id: "pd.1.n@support.test",
                reply_to: "tickets@support.test".into(),
                thread: ThreadHeaders::default(),
            };
            let mail = notification(&me, &n, Utc::now()).unwrap();
            assert!(mail.raw.len() < 16 * 1024, "{} bytes", mail.raw.len());
            assert!(
                mail.text
                    .contains("… (the full text is on the page: https://support.test/t/abc)"),
                "{}",
                &mail.text[mail.text.len() - 300..]
            );
        }
    }
}
