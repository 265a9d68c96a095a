//! View models: the store's read models turned into what a ticket page
//! shows (dates as UTC with the zone named, status words, who said what,
//! attachment links). Pure. It must not decide who may see what: the
//! store's scoped reads do that; here only the wording differs between
//! the customer's view and the agents'.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

use crate::domain::{MessageKind, Status};
use crate::store::{MessageView, TicketSummary};

/// A moment, for `<time datetime=…>` (`iso`) and for reading (`shown`).
/// Each is written where the page is rendered, not kept as a string: two
/// strings per date were a tenth of a list page's allocations.
#[derive(Debug, Clone, Copy)]
pub struct When {
    pub iso: Written,
    pub shown: Written,
}

/// One way of writing a moment (see [`When`]); `Display` writes it.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    at: DateTime<Utc>,
    style: Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `2024-05-01T14:03:09Z`
    Iso,
    /// `2024-05-01 14:03 UTC`
    Shown,
}

impl When {
    pub fn of(at: DateTime<Utc>) -> When {
        When {
            iso: Written {
                at,
                style: Style::Iso,
            },
            shown: Written {
                at,
                style: Style::Shown,
            },
        }
    }
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (date, time) = (self.at.date_naive(), self.at.time());
        // Written out by hand: chrono's format strings, then `format!`,
        // were most of the time a list of 50 rows spent on rendering.
        // Years beyond four digits are chrono's to write.
        if !(0..=9999).contains(&date.year()) {
            return if self.style == Style::Iso {
                f.write_str(&self.at.to_rfc3339_opts(SecondsFormat::Secs, true))
            } else {
                write!(f, "{}", self.at.format("%Y-%m-%d %H:%M UTC"))
            };
        }
        // `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DD HH:MM UTC`: 20 bytes.
        let mut text = [0u8; 20];
        put_digits(&mut text[0..4], date.year().unsigned_abs());
        put_digits(&mut text[5..7], date.month());
        put_digits(&mut text[8..10], date.day());
        put_digits(&mut text[11..13], time.hour());
        put_digits(&mut text[14..16], time.minute());
        (text[4], text[7], text[13]) = (b'-', b'-', b':');
        if self.style == Style::Iso {
            // chrono keeps a leap second as :59 with over a second of nanos.
            let leap = u32::from(time.nanosecond() >= 1_000_000_000);
            text[10] = b'T';
            text[16] = b':';
            put_digits(&mut text[17..19], time.second() + leap);
            text[19] = b'Z';
        } else {
            text[10] = b' ';
            text[16..20].copy_from_slice(b" UTC");
        }
        // Only ASCII digits and punctuation were written.
        f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?)
    }
}

/// `n` in as many decimal digits as `digits` holds, zero-padded (`n`
/// has no more).
fn put_digits(digits: &mut [u8], mut n: u32) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
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
            subject: display_subject(&summary.subject).to_string(),
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
pub fn display_subject(subject: &str) -> &str {
    if subject.trim().is_empty() {
        "(no subject)"
    } else {
        subject
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
        assert_eq!(w.shown.to_string(), "2024-05-01 14:03 UTC");
        assert_eq!(w.iso.to_string(), "2024-05-01T14:03:09Z");
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
            assert_eq!(
                w.iso.to_string(),
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            assert_eq!(
                w.shown.to_string(),
                at.format("%Y-%m-%d %H:%M UTC").to_string()
            );
        }
        // Years beyond four digits are chrono's to write.
        let far = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::days(400);
        let w = When::of(far);
        assert_eq!(
            w.iso.to_string(),
            far.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        assert_eq!(
            w.shown.to_string(),
            far.format("%Y-%m-%d %H:%M UTC").to_string()
        );
        assert_eq!(human_size(2048), "2 KB");
    }
}
