//! Ticket lists: the `?filter=…&page=…` query, the filter tabs with their
//! counts, the rows and the pager of `/r/TOKEN` and `/agent`. Pure. Links
//! are relative (`?filter=…`), so no ticket data but the link's own path
//! ever appears in a URL; it must not widen what the store returned.

use serde::Deserialize;

use super::view::{When, display_subject, status_label};
use crate::domain::TicketNumber;
use crate::store::{TicketFilter, TicketListPage};

fn filter_label(filter: TicketFilter) -> &'static str {
    match filter {
        TicketFilter::All => "All",
        TicketFilter::OpenOrPending => "Open or pending",
        TicketFilter::ResolvedOrClosed => "Resolved or closed",
    }
}

/// `?filter=…&page=…` (and `?key=…` and `?queue=…` on `/agent`). Anything
/// unknown or malformed means the default.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub page: Option<String>,
    pub key: Option<String>,
    pub queue: Option<String>,
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

/// One row of a list, borrowed from the store's page: a row's texts are
/// written where the page is rendered, not copied (copies, links and
/// dates were most of a list page's allocations).
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub number: i64,
    pub subject: &'a str,
    pub href: RowLink<'a>,
    pub status_label: &'static str,
    pub status_class: &'static str,
    pub created: When,
    pub last_activity: When,
    pub requester: &'a str,
    pub assignee: &'a str,
    pub queue: &'a str,
}

/// A row's link: the list's ticket path (`/r/TOKEN/t/`, `/agent/t/`)
/// and the ticket's number.
#[derive(Debug, Clone, Copy)]
pub struct RowLink<'a> {
    pub base: &'a str,
    pub number: TicketNumber,
}

impl std::fmt::Display for RowLink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.base, self.number.0)
    }
}

/// A list page: tabs, rows, pager.
#[derive(Debug, Clone)]
pub struct ListView<'a> {
    pub tabs: Vec<Tab>,
    pub rows: Vec<Row<'a>>,
    pub current_label: &'static str,
    pub page: u32,
    pub page_count: u32,
    pub previous: Option<String>,
    pub next: Option<String>,
    /// Agents see requester and assignee columns.
    pub show_people: bool,
    /// Agents see the queue column where there are several queues.
    pub show_queue: bool,
}

impl<'a> ListView<'a> {
    /// About how long its page is, as HTML: room enough for most pages,
    /// so the page is not copied over and over as it grows (a list of 50
    /// rows is ~26 KB).
    pub fn html_bytes(&self) -> usize {
        const PAGE: usize = 3 * 1024;
        const ROW: usize = 512;
        PAGE + ROW * self.rows.len()
    }

    /// Keeps `?queue=NAME` (a configured queue's name: one word) in the
    /// tabs' and the pager's links, and shows the queue column when the
    /// list holds every queue's tickets (`None`) of several.
    pub fn in_queue(mut self, queue: Option<&str>, several: bool) -> ListView<'a> {
        if let Some(queue) = queue {
            let keep = |href: &mut String| href.push_str(&format!("&queue={queue}"));
            self.tabs.iter_mut().for_each(|t| keep(&mut t.href));
            self.previous.iter_mut().for_each(keep);
            self.next.iter_mut().for_each(keep);
        }
        self.show_queue = several && queue.is_none();
        self
    }
}

/// Builds a list view; links are relative (`?filter=…`) so that no
/// ticket data but the link's own path ever appears in a URL. A row
/// links to `row_base` followed by its ticket's number.
pub fn list_view<'a>(
    list: &'a TicketListPage,
    row_base: &'a str,
    show_people: bool,
) -> ListView<'a> {
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
            href: RowLink {
                base: row_base,
                number: r.number,
            },
            status_label: status_label(r.status),
            status_class: r.status.as_str(),
            created: When::of(r.created_at),
            last_activity: When::of(r.last_activity_at),
            requester: &r.requester,
            assignee: r.assignee.as_deref().unwrap_or("nobody"),
            queue: &r.queue,
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
        show_queue: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_fall_back_to_defaults() {
        let q = ListQuery {
            filter: Some("closed".into()),
            page: Some("3".into()),
            key: None,
            queue: None,
        };
        assert_eq!(q.filter(), TicketFilter::ResolvedOrClosed);
        assert_eq!(q.page(), 3);
        let q = ListQuery {
            filter: Some("<x>".into()),
            page: Some("-1".into()),
            key: None,
            queue: None,
        };
        assert_eq!(q.filter(), TicketFilter::All);
        assert_eq!(q.page(), 1);
    }

    #[test]
    fn rows_show_the_store_s_row_with_its_link() {
        let at = chrono::DateTime::parse_from_rfc3339("2024-05-01T14:03:09Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let row = |number: i64, subject: &str, assignee: Option<&str>| crate::store::TicketRow {
            number: TicketNumber(number),
            subject: subject.to_string(),
            status: crate::domain::Status::Pending,
            requester: "ann@customer.test".into(),
            assignee: assignee.map(str::to_string),
            created_at: at,
            last_activity_at: at,
            queue: "support".into(),
        };
        let page = TicketListPage {
            rows: vec![row(7, "Refund", Some("bob")), row(3, "  ", None)],
            counts: crate::store::FilterCounts::default(),
            filter: TicketFilter::All,
            page: 1,
            page_count: 1,
        };
        let view = list_view(&page, "/r/abc/t/", true);
        let first = &view.rows[0];
        assert_eq!(first.href.to_string(), "/r/abc/t/7");
        assert_eq!((first.subject, first.assignee), ("Refund", "bob"));
        assert_eq!(
            (first.requester, first.queue),
            ("ann@customer.test", "support")
        );
        assert_eq!(first.created.iso.to_string(), "2024-05-01T14:03:09Z");
        let second = &view.rows[1];
        assert_eq!(second.href.to_string(), "/r/abc/t/3");
        assert_eq!(
            (second.subject, second.assignee),
            ("(no subject)", "nobody")
        );
    }
}
