//! Compose: builds the mails postdesk sends (confirmations, polite
//! refusals) as finished RFC 5322 bytes, with the headers every mail of
//! ours carries: a signed Message-ID of our domain, In-Reply-To/References
//! to the ticket's thread, `Auto-Submitted`, `X-Auto-Response-Suppress:
//! All` and our loop marker. Pure: the clock comes in as `now`, nothing is
//! sent from here (that is `outbound::sender`).

use chrono::{DateTime, Utc};
use lettre::Message;
use lettre::address::{Address, Envelope};
use lettre::message::Mailbox as LettreMailbox;
use lettre::message::header::{HeaderName, HeaderValue};

use crate::domain::{MessageKind, TicketNumber};
use crate::ingest::classify::LOOP_HEADER;
use crate::ingest::parse::Mailbox;
use crate::ingest::subject::SubjectTag;
use crate::outbound::mime::{self, Body};
pub use crate::outbound::mime::{OutgoingAttachment, crlf};
use crate::outbound::templates::{TemplateName, Vars, Wording};

/// Who we are when we write.
#[derive(Debug, Clone)]
pub struct Identity {
    pub address: String,
    pub name: String,
    pub tag: SubjectTag,
    pub loop_value: String,
    /// The queue's templates (`outbound::templates`).
    pub wording: Wording,
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
/// subject, the status link, a short quote of what we received. Worded by
/// the queue's `confirmation` template.
pub fn confirmation(
    me: &Identity,
    c: &Confirmation,
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let (received, cut) = excerpt(c.received_text.trim(), MAX_QUOTE_BYTES, 20);
    let vars = Vars::new()
        .set("ticket", c.ticket.0)
        .set("subject", c.subject)
        .set("status", "new")
        .set("tag", format!("[{} #{}]", me.tag.as_str(), c.ticket))
        .set("link", c.status_link)
        .set("requester_link", c.requester_link)
        .set("requester_name", c.to.name.clone())
        .set("follows", c.follows.map(|old| old.0))
        .set("text", received)
        .set("text_cut", cut)
        .set("quote", quote(c.received_text, 20));
    let r = me.wording.render(TemplateName::Confirmation, &vars)?;
    let draft = Draft {
        kind: MessageKind::Confirmation,
        auto_submitted: Some("auto-replied"),
        automatic_reply: true,
        from_name: me.name.clone(),
        to: vec![c.to.clone()],
        reply_to: None,
        subject: me.tagged(r.subject.as_deref().unwrap_or(c.subject), c.ticket),
        html: Some(r.html),
        text: r.text,
        attachments: Vec::new(),
        message_id: c.message_id,
        thread: c.thread.clone(),
    };
    build(me, draft, now)
}

/// A polite note to the sender of a mail of `size` bytes, over our
/// `limit`: `Auto-Submitted: auto-replied`, no ticket. Worded by the
/// queue's `oversize` template.
pub fn refusal(
    me: &Identity,
    to: &Mailbox,
    original_subject: &str,
    (size, limit): (u64, u64),
    message_id: &str,
    thread: ThreadHeaders,
    now: DateTime<Utc>,
) -> anyhow::Result<OutgoingMail> {
    let vars = Vars::new()
        .set("subject", shorten(original_subject, MAX_SUBJECT_BYTES))
        .set("requester_name", to.name.clone())
        .set("size", size)
        .set("limit", limit);
    let r = me.wording.render(TemplateName::Oversize, &vars)?;
    let subject = r
        .subject
        .unwrap_or_else(|| format!("Re: {original_subject}"));
    let draft = Draft {
        kind: MessageKind::Status,
        auto_submitted: Some("auto-replied"),
        automatic_reply: true,
        from_name: me.name.clone(),
        to: vec![to.clone()],
        reply_to: None,
        subject,
        html: Some(r.html),
        text: r.text,
        attachments: Vec::new(),
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
    /// The HTML part: the same as `text`, in HTML. `None` sends the text
    /// alone (our own mails set their template's HTML part).
    pub html: Option<String>,
    /// Files the mail carries (inline where the HTML shows them by `cid:`).
    pub attachments: Vec<OutgoingAttachment>,
    pub message_id: &'a str,
    pub thread: ThreadHeaders,
}

/// Builds the bytes with every header our mails carry.
pub fn build(me: &Identity, d: Draft, now: DateTime<Utc>) -> anyhow::Result<OutgoingMail> {
    let sender: Address = me.address.parse()?;
    let from = LettreMailbox::new(Some(d.from_name.clone()), sender.clone());
    let mut builder = Message::builder()
        .from(from)
        .subject(shorten(&d.subject, MAX_SUBJECT_BYTES))
        .date(now.into())
        .message_id(Some(format!("<{}>", d.message_id)))
        .raw_header(raw_header("X-Auto-Response-Suppress", "All"))
        .raw_header(raw_header(LOOP_HEADER, &me.loop_value));
    let mut recipients = Vec::with_capacity(d.to.len());
    for to in &d.to {
        let address: Address = to.address.parse()?;
        recipients.push(address.clone());
        builder = builder.to(LettreMailbox::new(to.name.clone(), address));
    }
    // Given, lettre does not parse the From and To it was just handed back
    // out of the headers (a few percent of composing a mail).
    builder = builder.envelope(Envelope::new(Some(sender), recipients)?);
    if let Some(reply_to) = &d.reply_to {
        builder = builder.reply_to(LettreMailbox::new(Some(me.name.clone()), reply_to.parse()?));
    }
    if let Some(value) = d.auto_submitted {
        builder = builder.raw_header(raw_header("Auto-Submitted", value));
    }
    if let Some(parent) = d.thread.in_reply_to.as_ref().filter(|id| fits_header(id)) {
        builder = builder.in_reply_to(format!("<{parent}>"));
    }
    let references = trim_references(&d.thread.references);
    if !references.is_empty() {
        let refs: Vec<String> = references.iter().map(|r| format!("<{r}>")).collect();
        builder = builder.references(refs.join(" "));
    }
    // Every text part goes to lettre in CRLF (see `mime::crlf`).
    let message = match mime::body(&d.text, d.html.as_deref(), &d.attachments) {
        Body::Single(part) => builder.singlepart(part)?,
        Body::Multi(parts) => builder.multipart(parts)?,
    };
    Ok(OutgoingMail {
        kind: d.kind,
        automatic_reply: d.automatic_reply,
        message_id: d.message_id.to_string(),
        envelope_from: me.address.clone(),
        recipients: d.to.iter().map(|m| m.address.to_string()).collect(),
        subject: d.subject,
        text: d.text,
        raw: message.formatted(),
    })
}

fn raw_header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

/// Bytes of a subject we write (the ticket keeps the whole subject).
const MAX_SUBJECT_BYTES: usize = 250;

/// Bytes of the customer's text the confirmation quotes (one 20 MB line
/// is one line).
const MAX_QUOTE_BYTES: usize = 4 * 1024;

/// The first `max_lines` lines of `text`, each prefixed with `> `, at most
/// [`MAX_QUOTE_BYTES`] of them. Reads no further than it quotes.
fn quote(text: &str, max_lines: usize) -> String {
    let (head, cut) = excerpt(text.trim(), MAX_QUOTE_BYTES, max_lines);
    let mut out: Vec<String> = head
        .lines()
        .map(|l| format!("> {l}").trim_end().to_string())
        .collect();
    if cut {
        out.push("> [...]".to_string());
    }
    out.join("\n")
}

/// The start of `text`: at most `max_lines` lines and `max_bytes` bytes
/// (cut at a character boundary), and whether anything was left out.
/// Looks at no more of `text` than it returns.
pub fn excerpt(text: &str, max_bytes: usize, max_lines: usize) -> (&str, bool) {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if let Some((i, _)) = text[..end]
        .match_indices('\n')
        .nth(max_lines.saturating_sub(1))
    {
        end = i;
    }
    let head = &text[..end];
    (head, !text[end..].trim().is_empty())
}

/// `text` cut to at most `max_bytes` (at a character boundary), with `…`
/// where it was cut.
pub fn shorten(text: &str, max_bytes: usize) -> String {
    match excerpt(text, max_bytes, usize::MAX) {
        (head, false) => head.to_string(),
        (head, true) => format!("{}…", head.trim_end()),
    }
}

/// References we copy into a mail: the first and the last
/// [`KEPT_REFERENCES`], as mail clients do (200,000 of them made a 2.4 MB
/// header on every mail), and none too long for a header line.
pub fn trim_references(references: &[String]) -> Vec<String> {
    let usable: Vec<&String> = references.iter().filter(|r| fits_header(r)).collect();
    if usable.len() <= KEPT_REFERENCES + 1 {
        return usable.into_iter().cloned().collect();
    }
    let last = &usable[usable.len() - KEPT_REFERENCES..];
    std::iter::once(usable[0])
        .chain(last.iter().copied())
        .cloned()
        .collect()
}

/// How many of the newest references a mail of ours copies (plus the first).
pub const KEPT_REFERENCES: usize = 20;

/// A Message-ID short enough for a header line (RFC 5322 allows 998
/// characters a line; real ones are under 100, ours 73 and the domain).
fn fits_header(id: &str) -> bool {
    id.len() <= 250
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
            wording: Wording::default(),
        }
    }

    #[test]
    fn a_confirmation_carries_every_header_of_ours() {
        let to = Mailbox::parse("ann@customer.test", Some("Ann")).unwrap();
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

    fn draft(text: String, references: Vec<String>) -> Draft<'static> {
        Draft {
            kind: MessageKind::Notification,
            auto_submitted: Some("auto-generated"),
            automatic_reply: false,
            from_name: "Support".into(),
            to: vec![Mailbox::parse("ann@customer.test", None).unwrap()],
            reply_to: None,
            subject: "s".into(),
            text,
            html: None,
            attachments: Vec::new(),
            message_id: "pd.1.n.x@support.test",
            thread: ThreadHeaders {
                in_reply_to: None,
                references,
            },
        }
    }

    #[test]
    fn a_body_of_200k_lines_reaches_lettre_in_crlf_so_it_inserts_nothing() {
        // Issue 17: lettre inserts each missing `\r` one at a time, moving
        // the rest of the body (200k lines took 18 s with two agents). The
        // body it gets is already CRLF, so it has nothing to insert: its
        // output carries our body byte for byte. (Time is for
        // `bench_hostile`, not for a test.)
        let text: String = (0..200_000).map(|i| format!("line {i}\n")).collect();
        let body = crlf(&text);
        assert!(
            !body.replace("\r\n", "").contains('\n'),
            "a bare LF is left"
        );
        assert_eq!(body.len(), text.len() + 200_000);
        let mail = build(&me(), draft(text, Vec::new()), Utc::now()).unwrap();
        let raw = String::from_utf8(mail.raw).unwrap();
        let (_, sent_body) = raw.split_once("\r\n\r\n").expect("a header section");
        assert!(sent_body.starts_with(&body[..body.len() - 2]));
        assert_eq!(crlf("a\r\nb\nc\r"), "a\r\nb\r\nc\r");
    }

    #[test]
    fn references_keep_the_first_and_the_last_twenty() {
        let refs: Vec<String> = (0..200_000).map(|i| format!("r{i}@x.test")).collect();
        let mail = build(&me(), draft("hi".into(), refs), Utc::now()).unwrap();
        let parsed = parse(&mail.raw).unwrap();
        assert_eq!(parsed.references.len(), KEPT_REFERENCES + 1);
        assert_eq!(parsed.references[0], "r0@x.test");
        assert_eq!(parsed.references[1], "r199980@x.test");
        assert_eq!(parsed.references.last().unwrap(), "r199999@x.test");
        assert!(mail.raw.len() < 4096, "{} bytes", mail.raw.len());
        let long = vec![
            "a@b.test".to_string(),
            format!("{}@x.test", "y".repeat(5000)),
        ];
        assert_eq!(trim_references(&long), vec!["a@b.test".to_string()]);
    }

    #[test]
    fn the_confirmation_quotes_a_bounded_excerpt() {
        let to = Mailbox::parse("ann@customer.test", None).unwrap();
        let huge = "z".repeat(20_000_000);
        let c = Confirmation {
            ticket: TicketNumber(3),
            subject: &"long subject ".repeat(100_000),
            to: &to,
            received_text: &huge,
            status_link: "l",
            requester_link: "r",
            follows: None,
            message_id: "a@b.test",
            thread: ThreadHeaders::default(),
        };
        let mail = confirmation(&me(), &c, Utc::now()).unwrap();
        // The excerpt is in both parts, text and HTML.
        assert!(mail.raw.len() < 16 * 1024, "{} bytes", mail.raw.len());
        assert!(mail.text.contains("> [...]"));
        assert!(
            mail.subject.len() > 1_000_000,
            "the ticket keeps its subject"
        );
        assert_eq!(excerpt("a\nb\nc", 100, 2), ("a\nb", true));
        assert_eq!(excerpt("a\nb\n", 100, 2), ("a\nb", false));
        assert_eq!(excerpt("é", 1, 5), ("", true));
        assert_eq!(crlf("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
    }

    #[test]
    fn the_tag_is_never_doubled() {
        let to = Mailbox::parse("ann@customer.test", None).unwrap();
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
