//! Compose: builds the mails postdesk sends (confirmations, polite
//! refusals) as finished RFC 5322 bytes, with the headers every mail of
//! ours carries: a signed Message-ID of our domain, In-Reply-To/References
//! to the ticket's thread, `Auto-Submitted`, `X-Auto-Response-Suppress:
//! All` and our loop marker. Pure: the clock comes in as `now`, nothing is
//! sent from here (that is `outbound::sender`).

use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox as LettreMailbox, SinglePart};

use crate::domain::{MessageKind, TicketNumber};
use crate::ingest::classify::LOOP_HEADER;
use crate::ingest::parse::Mailbox;
use crate::ingest::subject::SubjectTag;

/// Who we are when we write.
#[derive(Debug, Clone)]
pub struct Identity {
    pub address: String,
    pub name: String,
    pub tag: SubjectTag,
    pub loop_value: String,
}

impl Identity {
    /// `[TAG #N] subject`, the tag exactly once.
    pub fn tagged(&self, subject: &str, ticket: TicketNumber) -> String {
        self.tag.tagged(subject, ticket.0 as u64)
    }
}

/// A finished mail, ready for the outbox.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub kind: MessageKind,
    /// An automatic answer to an inbound mail (counts toward the
    /// per-address rate limit).
    pub automatic_reply: bool,
    /// Without angle brackets.
    pub message_id: String,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub subject: String,
    /// The plain text body, also stored as the message's text.
    pub text: String,
    pub raw: Vec<u8>,
}

/// The thread a mail of ours answers.
#[derive(Debug, Clone, Default)]
pub struct ThreadHeaders {
    /// The Message-ID we answer (no brackets).
    pub in_reply_to: Option<String>,
    /// The whole chain, oldest first (no brackets).
    pub references: Vec<String>,
}

/// What the confirmation of a new ticket says.
#[derive(Debug, Clone)]
pub struct Confirmation<'a> {
    pub ticket: TicketNumber,
    pub subject: &'a str,
    pub to: &'a Mailbox,
    pub received_text: &'a str,
    pub status_link: &'a str,
    pub requester_link: &'a str,
    /// The closed ticket this one continues.
    pub follows: Option<TicketNumber>,
    pub message_id: &'a str,
    pub thread: ThreadHeaders,
}

/// The confirmation: `Auto-Submitted: auto-replied`, the tag in the
/// subject, the status link, a short quote of what we received.
pub fn confirmation(
    me: &Identity,
    c: &Confirmation,
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let greeting = match &c.to.name {
        Some(name) => format!("Hello {name},"),
        None => "Hello,".to_string(),
    };
    let tag = format!("[{} #{}]", me.tag.as_str(), c.ticket);
    let text = format!(
        "{greeting}\n\n\
         we have received your request and opened ticket #{number}.{follows}\n\n\
         Follow its status here:\n{link}\n\n\
         All your requests with us:\n{requester_link}\n\n\
         To add something, just reply to this mail and keep {tag} in the subject.\n\n\
         {name}\n\n\
         --- What we received ---\n{quote}\n",
        number = c.ticket,
        follows = c
            .follows
            .map(|old| format!("\nIt continues your earlier request #{old}, which was closed."))
            .unwrap_or_default(),
        link = c.status_link,
        requester_link = c.requester_link,
        name = me.name,
        quote = quote(c.received_text, 20),
    );
    let draft = Draft {
        kind: MessageKind::Confirmation,
        auto_submitted: Some("auto-replied"),
        automatic_reply: true,
        from_name: me.name.clone(),
        to: vec![c.to.clone()],
        reply_to: None,
        subject: me.tagged(c.subject, c.ticket),
        text,
        message_id: c.message_id,
        thread: c.thread.clone(),
    };
    build(me, draft, now)
}

/// A polite note to the sender of a mail we could not take (too large,
/// unreadable): `Auto-Submitted: auto-replied`, no ticket.
pub fn refusal(
    me: &Identity,
    to: &Mailbox,
    original_subject: &str,
    reason: &str,
    message_id: &str,
    thread: ThreadHeaders,
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let text = format!(
        "Hello,\n\nwe could not take your mail \"{original_subject}\": {reason}.\n\
         Nothing was lost: it is kept for our team. If you can, please send it again \
         in a smaller or simpler form.\n\n{}\n",
        me.name
    );
    let draft = Draft {
        kind: MessageKind::Status,
        auto_submitted: Some("auto-replied"),
        automatic_reply: true,
        from_name: me.name.clone(),
        to: vec![to.clone()],
        reply_to: None,
        subject: format!("Re: {original_subject}"),
        text,
        message_id,
        thread,
    };
    build(me, draft, now)
}

/// Everything that differs between the mails we send.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    pub kind: MessageKind,
    /// `Some("auto-replied")`, `Some("auto-generated")`, or `None` for a
    /// person's relayed reply.
    pub auto_submitted: Option<&'static str>,
    /// Counts toward the per-address limit on automatic replies.
    pub automatic_reply: bool,
    /// The display name on From (the support name, or "Alice via Support").
    pub from_name: String,
    pub to: Vec<Mailbox>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub text: String,
    pub message_id: &'a str,
    pub thread: ThreadHeaders,
}

/// Builds the bytes with every header our mails carry.
pub fn build(me: &Identity, d: Draft, now: DateTime<Utc>) -> anyhow::Result<OutgoingMail> {
    let from = LettreMailbox::new(Some(d.from_name.clone()), me.address.parse()?);
    let mut builder = Message::builder()
        .from(from)
        .subject(d.subject.clone())
        .date(now.into())
        .message_id(Some(format!("<{}>", d.message_id)))
        .raw_header(raw_header("X-Auto-Response-Suppress", "All"))
        .raw_header(raw_header(LOOP_HEADER, &me.loop_value));
    for to in &d.to {
        builder = builder.to(LettreMailbox::new(to.name.clone(), to.address.parse()?));
    }
    if let Some(reply_to) = &d.reply_to {
        builder = builder.reply_to(LettreMailbox::new(Some(me.name.clone()), reply_to.parse()?));
    }
    if let Some(value) = d.auto_submitted {
        builder = builder.raw_header(raw_header("Auto-Submitted", value));
    }
    if let Some(parent) = &d.thread.in_reply_to {
        builder = builder.in_reply_to(format!("<{parent}>"));
    }
    if !d.thread.references.is_empty() {
        let refs: Vec<String> = d
            .thread
            .references
            .iter()
            .map(|r| format!("<{r}>"))
            .collect();
        builder = builder.references(refs.join(" "));
    }
    let message = builder.singlepart(
        SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(d.text.clone()),
    )?;
    Ok(OutgoingMail {
        kind: d.kind,
        automatic_reply: d.automatic_reply,
        message_id: d.message_id.to_string(),
        envelope_from: me.address.clone(),
        recipients: d.to.iter().map(|m| m.address.clone()).collect(),
        subject: d.subject,
        text: d.text,
        raw: message.formatted(),
    })
}

fn raw_header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

/// The first `max_lines` lines of `text`, each prefixed with `> `.
fn quote(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    let mut out: Vec<String> = lines
        .iter()
        .take(max_lines)
        .map(|l| format!("> {l}").trim_end().to_string())
        .collect();
    if lines.len() > max_lines {
        out.push("> [...]".to_string());
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;

    fn me() -> Identity {
        Identity {
            address: "tickets@support.test".into(),
            name: "Example Support".into(),
            tag: SubjectTag::new("Ticket"),
            loop_value: "loop-1".into(),
        }
    }

    #[test]
    fn a_confirmation_carries_every_header_of_ours() {
        let to = Mailbox::new("ann@customer.test", Some("Ann"));
        let c = Confirmation {
            ticket: TicketNumber(42),
            subject: "Re: Printer on fire",
            to: &to,
            received_text: "It burns.\nPlease help.",
            status_link: "https://support.test/t/abc",
            requester_link: "https://support.test/r/def",
            follows: None,
            message_id: "pd.42.c.x@support.test",
            thread: ThreadHeaders {
                in_reply_to: Some("m1@customer.test".into()),
                references: vec!["m0@customer.test".into(), "m1@customer.test".into()],
            },
        };
        let mail = confirmation(&me(), &c, Utc::now()).unwrap();
        let parsed = parse(&mail.raw).unwrap();
        assert_eq!(parsed.subject, "[Ticket #42] Printer on fire");
        assert_eq!(parsed.message_id.as_deref(), Some("pd.42.c.x@support.test"));
        assert_eq!(parsed.in_reply_to, vec!["m1@customer.test"]);
        assert_eq!(
            parsed.references,
            vec!["m0@customer.test", "m1@customer.test"]
        );
        assert_eq!(parsed.header("auto-submitted"), Some("auto-replied"));
        assert_eq!(parsed.header("x-auto-response-suppress"), Some("All"));
        assert_eq!(parsed.header("x-postdesk-loop"), Some("loop-1"));
        assert_eq!(parsed.from.unwrap().address, "tickets@support.test");
        assert!(parsed.text.contains("https://support.test/t/abc"));
        assert!(parsed.text.contains("> It burns."));
        assert_eq!(mail.recipients, vec!["ann@customer.test"]);
    }

    #[test]
    fn the_tag_is_never_doubled() {
        let to = Mailbox::new("ann@customer.test", None);
        let c = Confirmation {
            ticket: TicketNumber(7),
            subject: "[Ticket #7] again",
            to: &to,
            received_text: "",
            status_link: "l",
            requester_link: "r",
            follows: None,
            message_id: "a@b.test",
            thread: ThreadHeaders::default(),
        };
        let mail = confirmation(&me(), &c, Utc::now()).unwrap();
        assert_eq!(mail.subject, "[Ticket #7] again");
    }
}
