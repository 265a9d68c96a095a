//! Notify: the texts of the mails around agents' work: the notification
//! an agent gets for a customer's mail, the agent's reply relayed to the
//! customer, the status email, and the answer to a refused command. Built
//! on [`compose::build`]; pure, like it.

use chrono::{DateTime, Utc};

use crate::domain::{MessageKind, Status, TicketNumber};
use crate::ingest::agent::COMMAND_HELP;
use crate::ingest::parse::Mailbox;
use crate::outbound::compose::{
    self, Draft, Identity, OutgoingAttachment, OutgoingMail, ThreadHeaders,
};
use crate::outbound::html::{self, html_from_text};
use crate::outbound::templates::{self, TemplateName, Vars};

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
    /// The ticket's status once this mail is stored.
    pub status: Status,
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
    let some = |list: &[Mailbox]| (!list.is_empty()).then(|| people(list));
    let vars = Vars::new()
        .set("ticket", n.ticket.0)
        .set("subject", n.subject)
        .set("status", n.status.as_str())
        .set("tag", format!("[{} #{}]", me.tag.as_str(), n.ticket))
        .set("link", n.status_link)
        .set("agent_name", name_of(&n.agent))
        .set("customer", n.customer.display())
        .set("requester", n.requester.display())
        .set("requester_name", n.requester.name.clone())
        .set("cc", some(n.cc))
        .set("proposed_cc", some(n.proposed_cc))
        .set("is_new_ticket", n.is_new_ticket)
        .set("text", customer_text(n.new_text, n.status_link))
        .set("commands", COMMAND_HELP);
    let r = me.wording.render(TemplateName::Notification, &vars)?;
    let draft = Draft {
        kind: MessageKind::Notification,
        auto_submitted: Some("auto-generated"),
        automatic_reply: false,
        from_name: me.name.clone(),
        to: vec![n.agent.clone()],
        reply_to: Some(n.reply_to.clone()),
        subject: me.tagged(r.subject.as_deref().unwrap_or(n.subject), n.ticket),
        text: r.text,
        html: Some(r.html),
        attachments: Vec::new(),
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

/// A person's display name, or the address where there is none.
fn name_of(m: &Mailbox) -> String {
    m.name.clone().unwrap_or_else(|| m.address.to_string())
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
    /// The agent's own HTML, sanitised (`sanitize::relay_html`), as a
    /// fragment; `None` makes it from `text`.
    pub html: Option<&'a str>,
    /// The agent's attachments, inline images included.
    pub attachments: &'a [OutgoingAttachment],
    /// `limits.max_message_bytes`: a larger mail goes without its
    /// attachments, and says where they are.
    pub max_bytes: u64,
    pub status_link: &'a str,
    pub message_id: &'a str,
    pub reply_to: String,
    pub thread: ThreadHeaders,
}

pub fn reply(me: &Identity, r: &Reply, now: DateTime<Utc>) -> anyhow::Result<OutgoingMail> {
    let vars = Vars::new()
        .set("ticket", r.ticket.0)
        .set("subject", r.subject)
        .set("tag", format!("[{} #{}]", me.tag.as_str(), r.ticket))
        .set("link", r.status_link)
        .set("agent_name", r.agent_name);
    let worded = me.wording.render(TemplateName::RelayFooter, &vars)?;
    let footer = worded.text;
    let text = format!("{}\n\n{footer}", r.text.trim());
    let agent_html = r
        .html
        .map(str::to_string)
        .unwrap_or_else(|| html::fragment_from_text(r.text.trim()));
    let mut draft = Draft {
        kind: MessageKind::Reply,
        auto_submitted: None,
        automatic_reply: false,
        from_name: format!("{} via {}", r.agent_name, me.name),
        to: r.to.clone(),
        reply_to: Some(r.reply_to.clone()),
        subject: format!("Re: {}", me.tagged(r.subject, r.ticket)),
        html: Some(html::document(&format!(
            "{agent_html}\n{}",
            worded.html_body
        ))),
        text,
        attachments: r.attachments.to_vec(),
        message_id: r.message_id,
        thread: r.thread.clone(),
    };
    let mail = compose::build(me, draft.clone(), now)?;
    if r.attachments.is_empty() || mail.raw.len() as u64 <= r.max_bytes {
        return Ok(mail);
    }
    // Too large for mail: the files stay on the ticket's page, where the
    // customer downloads them; both parts say so.
    let names: Vec<&str> = r.attachments.iter().map(|a| a.filename.as_str()).collect();
    draft.text = format!(
        "{}\n\n[The attached files were too large to send by mail ({}); \
         download them from your request's page: {}]\n\n{footer}",
        r.text.trim(),
        compose::shorten(&names.join(", "), 1000),
        r.status_link,
    );
    draft.html = Some(html_from_text(&draft.text));
    draft.attachments = Vec::new();
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
    let vars = Vars::new()
        .set("ticket", s.ticket.0)
        .set("subject", s.subject)
        .set("status", s.status.as_str())
        .set("tag", format!("[{} #{}]", me.tag.as_str(), s.ticket))
        .set("link", s.status_link)
        .set("requester_name", s.to.first().and_then(|m| m.name.clone()));
    let r = me.wording.render(TemplateName::Status, &vars)?;
    let subject = r
        .subject
        .unwrap_or_else(|| format!("{} ({})", s.subject, s.status));
    let draft = Draft {
        kind: MessageKind::Status,
        auto_submitted: Some("auto-generated"),
        automatic_reply: false,
        from_name: me.name.clone(),
        to: s.to.clone(),
        reply_to: Some(s.reply_to.clone()),
        subject: me.tagged(&subject, s.ticket),
        html: Some(r.html),
        text: r.text,
        attachments: Vec::new(),
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
    let vars = Vars::new()
        .set("ticket", u.ticket.0)
        .set("subject", compose::shorten(u.subject, 200))
        .set("agent_name", name_of(u.agent))
        .set("why", u.why)
        .set("commands", COMMAND_HELP);
    let r = me.wording.render(TemplateName::Unproven, &vars)?;
    let draft = Draft {
        kind: MessageKind::Notification,
        auto_submitted: Some("auto-replied"),
        // Counts toward the per-address limit: a stranger forging an
        // agent's From cannot make us flood the agent.
        automatic_reply: true,
        from_name: me.name.clone(),
        to: vec![u.agent.clone()],
        reply_to: Some(u.reply_to.clone()),
        subject: r
            .subject
            .unwrap_or_else(|| format!("Not applied: {}", u.subject)),
        html: Some(r.html),
        text: r.text,
        attachments: Vec::new(),
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
    let reasons: Vec<minijinja::Value> = reasons
        .iter()
        .map(|(line, why)| templates::vars::reason(line, why))
        .collect();
    let vars = Vars::new()
        .set("subject", subject)
        .set("agent_name", name_of(agent))
        .set("reasons", reasons)
        .set("commands", COMMAND_HELP);
    let r = me.wording.render(TemplateName::Refused, &vars)?;
    let draft = Draft {
        kind: MessageKind::Notification,
        auto_submitted: Some("auto-replied"),
        automatic_reply: false,
        from_name: me.name.clone(),
        to: vec![agent.clone()],
        reply_to: None,
        subject: r
            .subject
            .unwrap_or_else(|| format!("Not applied: {subject}")),
        html: Some(r.html),
        text: r.text,
        attachments: Vec::new(),
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
            wording: Default::default(),
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
                status: Status::New,
                status_link: "https://support.test/t/abc",
                is_new_ticket: true,
                message_id: "pd.1.n@support.test",
                reply_to: "tickets@support.test".into(),
                thread: ThreadHeaders::default(),
            };
            let mail = notification(&me, &n, Utc::now()).unwrap();
            // The excerpt is in both parts, text and HTML.
            assert!(mail.raw.len() < 32 * 1024, "{} bytes", mail.raw.len());
            assert!(
                mail.text
                    .contains("… (the full text is on the page: https://support.test/t/abc)"),
                "{}",
                &mail.text[mail.text.len() - 300..]
            );
        }
    }

    #[test]
    fn a_reply_too_large_with_its_files_goes_without_them_and_says_where_they_are() {
        let me = Identity {
            address: "tickets@support.test".into(),
            name: "Support".into(),
            tag: SubjectTag::new("Ticket"),
            loop_value: "loop".into(),
            wording: Default::default(),
        };
        let files = [OutgoingAttachment {
            filename: "big.pdf".into(),
            media_type: "application/pdf".into(),
            bytes: vec![7; 200_000],
            content_id: None,
        }];
        let reply_with = |max_bytes: u64| {
            let r = Reply {
                ticket: TicketNumber(3),
                subject: "s",
                agent_name: "Alice",
                to: vec![Mailbox::parse("ann@customer.test", None).unwrap()],
                text: "Here it is.",
                html: Some("<p>Here <b>it</b> is.</p>"),
                attachments: &files,
                max_bytes,
                status_link: "https://support.test/t/abc",
                message_id: "pd.3.r@support.test",
                reply_to: "tickets@support.test".into(),
                thread: ThreadHeaders::default(),
            };
            crate::ingest::parse::parse(&reply(&me, &r, Utc::now()).unwrap().raw).unwrap()
        };
        let whole = reply_with(1_000_000);
        assert_eq!(whole.attachments.len(), 1);
        assert!(whole.html.unwrap().contains("<b>it</b>"));
        let cut = reply_with(100_000);
        assert!(cut.attachments.is_empty());
        assert!(
            cut.text.contains("too large to send by mail (big.pdf)"),
            "{}",
            cut.text
        );
        assert!(cut.text.contains("https://support.test/t/abc"));
        assert!(
            cut.html
                .unwrap()
                .contains("too large to send by mail (big.pdf)")
        );
    }
}
