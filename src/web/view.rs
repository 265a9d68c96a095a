//! View models: the store's read models turned into what a template shows
//! (dates as UTC with the zone named, status words, who said what, list
//! tabs and pages), and attachment downloads with a safe type and name.
//! Pure apart from building responses. It must not decide who may see
//! what: the store's scoped reads do that; here only the wording differs
//! between the customer's view and the agents'.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use crate::domain::{MessageKind, Status, TicketNumber};
use crate::store::{AttachmentFile, MessageView, TicketFilter, TicketListPage, TicketSummary};

/// A moment, for `<time datetime=…>` and for reading.
#[derive(Debug, Clone)]
pub struct When {
    pub iso: String,
    pub shown: String,
}

impl When {
    pub fn of(at: DateTime<Utc>) -> When {
        When {
            iso: at.to_rfc3339_opts(SecondsFormat::Secs, true),
            shown: at.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
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
}

impl TicketHeading {
    pub fn of(summary: &TicketSummary) -> TicketHeading {
        TicketHeading {
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
                when: When::of(m.date),
                text: m.text.clone(),
                quoted: m.quoted.clone(),
                attachments: attachment_links(m, attachment_base),
            }
        })
        .collect()
}

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
            Entry {
                sender,
                side,
                badge: Some(kind.map_or("Unknown kind", kind_label)),
                detail: Some(detail),
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
            name: a.filename.clone(),
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

fn filter_label(filter: TicketFilter) -> &'static str {
    match filter {
        TicketFilter::All => "All",
        TicketFilter::OpenOrPending => "Open or pending",
        TicketFilter::ResolvedOrClosed => "Resolved or closed",
    }
}

/// A subject as shown: never an empty heading.
fn display_subject(subject: &str) -> String {
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

/// `?filter=…&page=…` (and `?key=…` on `/agent`). Anything unknown or
/// malformed means the default.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub page: Option<String>,
    pub key: Option<String>,
}

impl ListQuery {
    pub fn filter(&self) -> TicketFilter {
        self.filter
            .as_deref()
            .and_then(TicketFilter::parse)
            .unwrap_or_default()
    }

    pub fn page(&self) -> u32 {
        self.page
            .as_deref()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(1)
    }
}

/// A filter tab.
#[derive(Debug, Clone)]
pub struct Tab {
    pub label: &'static str,
    pub count: i64,
    pub href: String,
    pub current: bool,
}

/// One row of a list.
#[derive(Debug, Clone)]
pub struct Row {
    pub number: i64,
    pub subject: String,
    pub href: String,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub created: When,
    pub last_activity: When,
    pub requester: String,
    pub assignee: String,
}

/// A list page: tabs, rows, pager.
#[derive(Debug, Clone)]
pub struct ListView {
    pub tabs: Vec<Tab>,
    pub rows: Vec<Row>,
    pub current_label: &'static str,
    pub page: u32,
    pub page_count: u32,
    pub previous: Option<String>,
    pub next: Option<String>,
    /// Agents see requester and assignee columns.
    pub show_people: bool,
}

/// Builds a list view; links are relative (`?filter=…`) so that no
/// ticket data but the link's own path ever appears in a URL.
pub fn list_view(
    list: &TicketListPage,
    row_href: impl Fn(TicketNumber) -> String,
    show_people: bool,
) -> ListView {
    let tabs = TicketFilter::ALL
        .into_iter()
        .map(|f| Tab {
            label: filter_label(f),
            count: list.counts.of(f),
            href: format!("?filter={}", f.as_str()),
            current: f == list.filter,
        })
        .collect();
    let page_href = |page: u32| format!("?filter={}&page={page}", list.filter.as_str());
    let rows = list
        .rows
        .iter()
        .map(|r| Row {
            number: r.number.0,
            subject: display_subject(&r.subject),
            href: row_href(r.number),
            status_label: status_label(r.status),
            status_class: r.status.as_str(),
            created: When::of(r.created_at),
            last_activity: When::of(r.last_activity_at),
            requester: r.requester.clone(),
            assignee: r.assignee.clone().unwrap_or_else(|| "nobody".to_string()),
        })
        .collect();
    ListView {
        tabs,
        rows,
        current_label: filter_label(list.filter),
        page: list.page,
        page_count: list.page_count,
        previous: (list.page > 1).then(|| page_href(list.page - 1)),
        next: (list.page < list.page_count).then(|| page_href(list.page + 1)),
        show_people,
    }
}

/// An attachment as a download: `Content-Disposition: attachment`, a type
/// from a short list of harmless ones (else `application/octet-stream`),
/// and a sandbox in case a browser renders it anyway.
pub fn download(file: AttachmentFile) -> Response {
    let disposition = content_disposition(&file.filename);
    let media_type = safe_media_type(&file.media_type);
    let mut response = file.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition)
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// The declared type if it is on the harmless list, else octet-stream.
pub fn safe_media_type(declared: &str) -> &'static str {
    let essence = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    const HARMLESS: [&str; 8] = [
        "application/pdf",
        "application/zip",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/webp",
        "text/csv",
        "text/plain",
    ];
    HARMLESS
        .into_iter()
        .find(|t| *t == essence)
        .unwrap_or("application/octet-stream")
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`
/// (RFC 6266): no path, no quotes, no control characters.
pub fn content_disposition(filename: &str) -> String {
    let base = filename
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim()
        .trim_start_matches('.');
    let base: String = base.chars().filter(|c| !c.is_control()).take(150).collect();
    let base = if base.is_empty() {
        "attachment".to_string()
    } else {
        base
    };
    let ascii: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .-_()+,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in base.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || "!#$&+-.^_`|~".contains(c) {
            encoded.push(c);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_types_pass() {
        assert_eq!(safe_media_type("image/PNG; name=x"), "image/png");
        assert_eq!(safe_media_type("text/html"), "application/octet-stream");
        assert_eq!(safe_media_type("image/svg+xml"), "application/octet-stream");
        assert_eq!(safe_media_type(""), "application/octet-stream");
    }

    #[test]
    fn download_names_lose_paths_quotes_and_markup() {
        let d = content_disposition("../../etc/<b>\"pass\"</b>.html");
        assert!(d.starts_with("attachment; filename=\""), "{d}");
        let ascii = d.split('"').nth(1).unwrap();
        assert!(!ascii.contains(['<', '>', '"', '/', '\\']), "{ascii}");
        assert!(d.contains("filename*=UTF-8''"), "{d}");
        assert!(HeaderValue::from_str(&d).is_ok());
        let d = content_disposition("Größe résumé.pdf");
        assert!(d.contains("Gr%C3%B6%C3%9Fe%20r%C3%A9sum%C3%A9.pdf"), "{d}");
        assert!(content_disposition("").contains("filename=\"attachment\""));
        assert!(content_disposition("\r\n").contains("filename=\"attachment\""));
    }

    #[test]
    fn queries_fall_back_to_defaults() {
        let q = ListQuery {
            filter: Some("closed".into()),
            page: Some("3".into()),
            key: None,
        };
        assert_eq!(q.filter(), TicketFilter::ResolvedOrClosed);
        assert_eq!(q.page(), 3);
        let q = ListQuery {
            filter: Some("<x>".into()),
            page: Some("-1".into()),
            key: None,
        };
        assert_eq!(q.filter(), TicketFilter::All);
        assert_eq!(q.page(), 1);
    }

    #[test]
    fn dates_name_their_zone() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T14:03:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let w = When::of(at);
        assert_eq!(w.shown, "2024-05-01 14:03 UTC");
        assert_eq!(w.iso, "2024-05-01T14:03:09Z");
        assert_eq!(human_size(10), "10 bytes");
        assert_eq!(human_size(2048), "2 KB");
    }
}
