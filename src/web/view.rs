//! View models: the store's read models turned into what a ticket page
//! shows (dates as UTC with the zone named, status words, who said what,
//! attachment links). Pure. It must not decide who may see what: the
//! store's scoped reads do that; here only the wording differs between
//! the customer's view and the agents'.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

use crate::domain::{MessageKind, Status};
use crate::store::{MessageView, TicketSummary};

/// A moment, for `<time datetime=…>` and for reading.
#[derive(Debug, Clone)]
pub struct When {
    pub iso: String,
    pub shown: String,
}

impl When {
    pub fn of(at: DateTime<Utc>) -> When {
        let (date, time) = (at.date_naive(), at.time());
        // Written out by hand: chrono's format strings, then `format!`,
        // were most of the time a list of 50 rows spent on rendering.
        // Years beyond four digits are chrono's to write.
        if !(0..=9999).contains(&date.year()) {
            return When {
                iso: at.to_rfc3339_opts(SecondsFormat::Secs, true),
                shown: at.format("%Y-%m-%d %H:%M UTC").to_string(),
            };
        }
        // chrono keeps a leap second as :59 with over a second of nanos.
        let leap = u32::from(time.nanosecond() >= 1_000_000_000);
        let mut day = String::with_capacity(10);
        push_digits(&mut day, date.year().unsigned_abs(), 4);
        for (separator, n) in [('-', date.month()), ('-', date.day())] {
            day.push(separator);
            push_digits(&mut day, n, 2);
        }
        let mut iso = String::with_capacity(20);
        let mut shown = String::with_capacity(20);
        for (text, between) in [(&mut iso, 'T'), (&mut shown, ' ')] {
            text.push_str(&day);
            text.push(between);
            push_digits(text, time.hour(), 2);
            text.push(':');
            push_digits(text, time.minute(), 2);
        }
        iso.push(':');
        push_digits(&mut iso, time.second() + leap, 2);
        iso.push('Z');
        shown.push_str(" UTC");
        When { iso, shown }
    }
}

/// `n` in `width` decimal digits, zero-padded (`n` has no more).
fn push_digits(text: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10u32.pow(place) % 10;
        text.push(char::from(b'0' + digit as u8));
    }
}

/// The top of a ticket page.
#[derive(Debug, Clone)]
pub struct TicketHeading {
    pub number: i64,
    pub subject: String,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub explanation: &'static str,
    pub created: When,
    pub last_activity: When,
    /// Who handles it: the queue's name for agents, its display name
    /// (the support address's) for the customer.
    pub queue: String,
}

impl TicketHeading {
    pub fn of(summary: &TicketSummary) -> TicketHeading {
        TicketHeading {
            queue: summary.queue.clone(),
            number: summary.number.0,
            subject: display_subject(&summary.subject),
            status_label: status_label(summary.status),
            status_class: summary.status.as_str(),
            explanation: summary.status.explanation(),
            created: When::of(summary.created_at),
            last_activity: When::of(summary.last_activity_at),
        }
    }
}

/// One message of a conversation as shown.
#[derive(Debug, Clone)]
pub struct Entry {
    pub sender: String,
    /// CSS class: `customer`, `support` or `internal`.
    pub side: &'static str,
    /// What kind of message it is, where that is worth saying.
    pub badge: Option<&'static str>,
    /// Agents only: address, threading reason, delivery.
    pub detail: Option<String>,
    /// Agents only: why a customer's mail is not on the customer's page.
    pub withheld: Option<&'static str>,
    pub when: When,
    pub text: String,
    pub quoted: String,
    pub attachments: Vec<AttachmentLink>,
}

#[derive(Debug, Clone)]
pub struct AttachmentLink {
    pub name: String,
    pub size: String,
    pub href: String,
}

/// The customer's view of public messages: agents and our own mail by
/// display name only, never an address of ours.
pub fn customer_entries(
    messages: &[MessageView],
    support_name: &str,
    attachment_base: &str,
) -> Vec<Entry> {
    messages
        .iter()
        .map(|m| {
            let from_support = m.direction == "out" || m.kind != MessageKind::Customer.as_str();
            let sender = match (&m.from_name, from_support) {
                (Some(name), _) => name.clone(),
                (None, true) => support_name.to_string(),
                (None, false) => m.from.clone(),
            };
            Entry {
                sender,
                side: if from_support { "support" } else { "customer" },
                badge: from_support.then_some("Support"),
                detail: None,
                withheld: None,
                when: When::of(m.date),
                text: m.text.clone(),
                quoted: m.quoted.clone(),
                attachments: attachment_links(m, attachment_base),
            }
        })
        .collect()
}

/// The agents' mark on a customer mail the customer's page leaves out.
pub const WITHHELD: &str = "Not shown to the customer: the sender takes no part in this ticket.";

/// The agents' view: every message, with address, kind and reasons.
pub fn agent_entries(messages: &[MessageView], attachment_base: &str) -> Vec<Entry> {
    messages
        .iter()
        .map(|m| {
            let kind = MessageKind::parse(&m.kind);
            let side = match kind {
                Some(MessageKind::Customer) => "customer",
                Some(
                    MessageKind::Note
                    | MessageKind::AutoReply
                    | MessageKind::Bounce
                    | MessageKind::List,
                ) => "internal",
                _ => "support",
            };
            let sender = match &m.from_name {
                Some(name) => format!("{name} <{}>", m.from),
                None => m.from.clone(),
            };
            let mut detail = format!("{} · {}", direction_word(&m.direction), m.thread_reason);
            if let Some(delivery) = &m.delivery {
                detail.push_str(&format!(" · delivery: {delivery}"));
            }
            // The store decided; here it is only said, for customer mail
            // (notes and automatic mail are never shown, as agents know).
            let withheld =
                (kind == Some(MessageKind::Customer) && !m.shown_to_customer).then_some(WITHHELD);
            Entry {
                sender,
                side,
                badge: Some(kind.map_or("Unknown kind", kind_label)),
                detail: Some(detail),
                withheld,
                when: When::of(m.date),
                text: m.text.clone(),
                quoted: m.quoted.clone(),
                attachments: attachment_links(m, attachment_base),
            }
        })
        .collect()
}

fn direction_word(direction: &str) -> &'static str {
    if direction == "out" {
        "sent by us"
    } else {
        "received"
    }
}

fn attachment_links(m: &MessageView, base: &str) -> Vec<AttachmentLink> {
    m.attachments
        .iter()
        .map(|a| AttachmentLink {
            name: super::download::display_name(&a.filename),
            size: human_size(a.size),
            href: format!("{base}/a/{}", a.id),
        })
        .collect()
}

pub fn kind_label(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Customer => "Customer",
        MessageKind::Agent => "Agent mail",
        MessageKind::Note => "Internal note",
        MessageKind::AutoReply => "Auto-reply",
        MessageKind::Bounce => "Bounce",
        MessageKind::List => "List mail",
        MessageKind::Confirmation => "Confirmation",
        MessageKind::Reply => "Reply to customer",
        MessageKind::Status => "Status mail",
        MessageKind::Notification => "Agent notification",
    }
}

pub fn status_label(status: Status) -> &'static str {
    match status {
        Status::New => "New",
        Status::Open => "Open",
        Status::Pending => "Pending",
        Status::Resolved => "Resolved",
        Status::Closed => "Closed",
    }
}

/// A subject as shown: never an empty heading.
pub fn display_subject(subject: &str) -> String {
    if subject.trim().is_empty() {
        "(no subject)".to_string()
    } else {
        subject.to_string()
    }
}

pub fn human_size(bytes: i64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} bytes"),
        b if b < 1024 * 1024 => format!("{:.0} KB", b as f64 / 1024.0),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_name_their_zone() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T14:03:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let w = When::of(at);
        assert_eq!(w.shown, "2024-05-01 14:03 UTC");
        assert_eq!(w.iso, "2024-05-01T14:03:09Z");
        assert_eq!(human_size(10), "10 bytes");
        // Written by hand, as chrono writes them (a leap second included).
        for text in [
            "0001-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "2016-12-31T23:59:60Z",
            "2024-02-29T07:08:09.999Z",
            "9999-12-31T23:59:59Z",
        ] {
            let at = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            let w = When::of(at);
            assert_eq!(w.iso, at.to_rfc3339_opts(SecondsFormat::Secs, true));
            assert_eq!(w.shown, at.format("%Y-%m-%d %H:%M UTC").to_string());
        }
        assert_eq!(human_size(2048), "2 KB");
    }
}
