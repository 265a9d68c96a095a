//! Page reads: what the status page needs beyond `ticket_page`. The
//! requester's list (filter counts, 50 a page), a ticket opened from that
//! list, attachment bytes checked against the link that asks for them, the
//! agents' queue and one ticket in full, and the counts behind `/metrics`.
//! Reads only, on reader connections. A customer-facing read must never
//! return another ticket's data, nor a message kind that is not public.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, TicketDetail};
use crate::domain::{MessageKind, Status, TicketNumber};

/// Rows on one page of a ticket list.
pub const PAGE_SIZE: u32 = 50;

/// The tabs of a ticket list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TicketFilter {
    #[default]
    All,
    OpenOrPending,
    ResolvedOrClosed,
}

impl TicketFilter {
    pub const ALL: [TicketFilter; 3] = [
        TicketFilter::All,
        TicketFilter::OpenOrPending,
        TicketFilter::ResolvedOrClosed,
    ];

    /// The value in a `?filter=` query.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketFilter::All => "all",
            TicketFilter::OpenOrPending => "open",
            TicketFilter::ResolvedOrClosed => "closed",
        }
    }

    pub fn parse(value: &str) -> Option<TicketFilter> {
        TicketFilter::ALL.into_iter().find(|f| f.as_str() == value)
    }

    /// Whether a ticket of `status` is under this tab.
    pub fn includes(self, status: Status) -> bool {
        match self {
            TicketFilter::All => true,
            TicketFilter::OpenOrPending => {
                matches!(status, Status::New | Status::Open | Status::Pending)
            }
            TicketFilter::ResolvedOrClosed => matches!(status, Status::Resolved | Status::Closed),
        }
    }

    /// The statuses under this tab, as SQL string literals (constants only).
    fn sql_statuses(self) -> &'static str {
        match self {
            TicketFilter::All => "'new', 'open', 'pending', 'resolved', 'closed'",
            TicketFilter::OpenOrPending => "'new', 'open', 'pending'",
            TicketFilter::ResolvedOrClosed => "'resolved', 'closed'",
        }
    }
}

/// How many tickets each tab holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterCounts {
    pub all: i64,
    pub open_or_pending: i64,
    pub resolved_or_closed: i64,
}

impl FilterCounts {
    pub fn of(&self, filter: TicketFilter) -> i64 {
        match filter {
            TicketFilter::All => self.all,
            TicketFilter::OpenOrPending => self.open_or_pending,
            TicketFilter::ResolvedOrClosed => self.resolved_or_closed,
        }
    }

    fn from_statuses(by_status: &BTreeMap<Status, i64>) -> FilterCounts {
        let sum = |filter: TicketFilter| {
            by_status
                .iter()
                .filter(|(s, _)| filter.includes(**s))
                .map(|(_, n)| n)
                .sum()
        };
        FilterCounts {
            all: sum(TicketFilter::All),
            open_or_pending: sum(TicketFilter::OpenOrPending),
            resolved_or_closed: sum(TicketFilter::ResolvedOrClosed),
        }
    }
}

/// One row of a ticket list.
#[derive(Debug, Clone)]
pub struct TicketRow {
    pub number: TicketNumber,
    pub subject: String,
    pub status: Status,
    pub requester: String,
    pub assignee: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
}

/// One page of a ticket list, newest activity first.
#[derive(Debug, Clone)]
pub struct TicketListPage {
    pub rows: Vec<TicketRow>,
    pub counts: FilterCounts,
    pub filter: TicketFilter,
    /// 1-based, clamped to the pages there are.
    pub page: u32,
    /// At least 1, even for an empty list.
    pub page_count: u32,
}

/// The list a requester link opens.
#[derive(Debug, Clone)]
pub struct RequesterPage {
    pub requester: String,
    pub list: TicketListPage,
}

/// One ticket as agents see it: every message, plus who holds it.
#[derive(Debug, Clone)]
pub struct AgentTicket {
    pub detail: TicketDetail,
    pub assignee: Option<String>,
}

/// An attachment's bytes, ready to download.
#[derive(Debug, Clone)]
pub struct AttachmentFile {
    pub filename: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// The counts behind `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    /// Every mail stored, quarantined ones included.
    pub mails_ingested: i64,
    pub mails_quarantined: i64,
    /// Every status, zero where there is none.
    pub tickets_by_status: BTreeMap<Status, i64>,
    pub outbox_pending: i64,
    pub outbox_failed: i64,
}

impl Store {
    /// The tickets of the requester a link token names; `None` for an
    /// unknown or revoked token.
    pub fn requester_page(
        &self,
        token: &str,
        filter: TicketFilter,
        page: u32,
    ) -> anyhow::Result<Option<RequesterPage>> {
        self.read(|c| {
            let Some(requester) = requester_of(c, token)? else {
                return Ok(None);
            };
            let list = ticket_list(c, Some(&requester), filter, page)?;
            Ok(Some(RequesterPage { requester, list }))
        })
    }

    /// A ticket opened from a requester's list: public messages only, and
    /// only if the ticket is that requester's.
    pub fn requester_ticket(
        &self,
        token: &str,
        number: TicketNumber,
    ) -> anyhow::Result<Option<TicketDetail>> {
        let owned = self.read(|c| owns_ticket(c, token, number))?;
        if !owned {
            return Ok(None);
        }
        let mut detail = self.ticket_detail(number)?;
        if let Some(ticket) = detail.as_mut() {
            ticket.messages.retain(|m| is_public_kind(&m.kind));
        }
        Ok(detail)
    }

    /// An attachment through a ticket link: only one on a public message
    /// of that link's ticket.
    pub fn ticket_attachment(
        &self,
        token: &str,
        attachment: i64,
    ) -> anyhow::Result<Option<AttachmentFile>> {
        self.read(|c| {
            let number: Option<i64> = c
                .query_row(
                    "SELECT ticket_number FROM access_tokens
                     WHERE token_hash = ?1 AND scope = 'ticket' AND revoked_at IS NULL",
                    [crate::tokens::hash_token(token)],
                    |r| r.get(0),
                )
                .optional()?;
            match number {
                Some(n) => attachment_of(c, TicketNumber(n), attachment, true),
                None => Ok(None),
            }
        })
    }

    /// An attachment through a requester link: only one on a public
    /// message of a ticket of that requester.
    pub fn requester_attachment(
        &self,
        token: &str,
        number: TicketNumber,
        attachment: i64,
    ) -> anyhow::Result<Option<AttachmentFile>> {
        self.read(|c| {
            if !owns_ticket(c, token, number)? {
                return Ok(None);
            }
            attachment_of(c, number, attachment, true)
        })
    }

    /// The agents' queue: every ticket, newest activity first.
    pub fn agent_queue(&self, filter: TicketFilter, page: u32) -> anyhow::Result<TicketListPage> {
        self.read(|c| ticket_list(c, None, filter, page))
    }

    /// One ticket in full for agents: notes, auto-replies, bounces and our
    /// own mails included.
    pub fn agent_ticket(&self, number: TicketNumber) -> anyhow::Result<Option<AgentTicket>> {
        let Some(detail) = self.ticket_detail(number)? else {
            return Ok(None);
        };
        let assignee = self.read(|c| {
            Ok(c.query_row(
                "SELECT assignee FROM tickets WHERE number = ?1",
                [number.0],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
        })?;
        Ok(Some(AgentTicket { detail, assignee }))
    }

    /// Any attachment of a ticket, for agents.
    pub fn agent_attachment(
        &self,
        number: TicketNumber,
        attachment: i64,
    ) -> anyhow::Result<Option<AttachmentFile>> {
        self.read(|c| attachment_of(c, number, attachment, false))
    }

    /// Counts for `/metrics`, in one read.
    pub fn store_metrics(&self) -> anyhow::Result<StoreMetrics> {
        self.read(|c| {
            let mails_ingested = c.query_row("SELECT count(*) FROM raw_mails", [], |r| r.get(0))?;
            let mails_quarantined =
                c.query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))?;
            let (outbox_pending, outbox_failed) = c.query_row(
                "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')),
                        count(*) FILTER (WHERE status = 'failed') FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(StoreMetrics {
                mails_ingested,
                mails_quarantined,
                tickets_by_status: counts_by_status(c, None)?,
                outbox_pending,
                outbox_failed,
            })
        })
    }
}

fn is_public_kind(kind: &str) -> bool {
    MessageKind::parse(kind).is_some_and(MessageKind::is_public)
}

/// The requester address a live requester token names.
fn requester_of(c: &Connection, token: &str) -> anyhow::Result<Option<String>> {
    Ok(c.query_row(
        "SELECT requester FROM access_tokens
         WHERE token_hash = ?1 AND scope = 'requester' AND revoked_at IS NULL",
        [crate::tokens::hash_token(token)],
        |r| r.get::<_, Option<String>>(0),
    )
    .optional()?
    .flatten())
}

/// Whether a live requester token names the requester of ticket `number`.
fn owns_ticket(c: &Connection, token: &str, number: TicketNumber) -> anyhow::Result<bool> {
    let Some(requester) = requester_of(c, token)? else {
        return Ok(false);
    };
    let owner: Option<String> = c
        .query_row(
            "SELECT requester FROM tickets WHERE number = ?1",
            [number.0],
            |r| r.get(0),
        )
        .optional()?;
    Ok(owner.is_some_and(|owner| owner == requester))
}

/// An attachment of ticket `number`; with `public_only`, only one on a
/// message the customer may see.
fn attachment_of(
    c: &Connection,
    number: TicketNumber,
    attachment: i64,
    public_only: bool,
) -> anyhow::Result<Option<AttachmentFile>> {
    let found = c
        .query_row(
            "SELECT a.filename, a.media_type, m.kind, b.bytes FROM attachments a
             JOIN messages m ON m.id = a.message_id
             JOIN blobs b ON b.sha256 = a.sha256
             WHERE a.id = ?1 AND m.ticket_number = ?2",
            params![attachment, number.0],
            |r| {
                Ok((
                    AttachmentFile {
                        filename: r.get(0)?,
                        media_type: r.get(1)?,
                        bytes: r.get(3)?,
                    },
                    r.get::<_, String>(2)?,
                ))
            },
        )
        .optional()?;
    Ok(found
        .filter(|(_, kind)| !public_only || is_public_kind(kind))
        .map(|(file, _)| file))
}

/// Tickets per status, of one requester or of all; every status present.
fn counts_by_status(
    c: &Connection,
    requester: Option<&str>,
) -> anyhow::Result<BTreeMap<Status, i64>> {
    let mut counts: BTreeMap<Status, i64> = Status::ALL.into_iter().map(|s| (s, 0)).collect();
    let mut add = |status: String, n: i64| {
        if let Ok(status) = Status::parse(&status) {
            *counts.entry(status).or_default() += n;
        }
    };
    match requester {
        Some(requester) => {
            let mut stmt = c.prepare_cached(
                "SELECT status, count(*) FROM tickets WHERE requester = ?1 GROUP BY status",
            )?;
            for row in stmt.query_map([requester], |r| Ok((r.get(0)?, r.get(1)?)))? {
                let (status, n) = row?;
                add(status, n);
            }
        }
        None => {
            let mut stmt =
                c.prepare_cached("SELECT status, count(*) FROM tickets GROUP BY status")?;
            for row in stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))? {
                let (status, n) = row?;
                add(status, n);
            }
        }
    }
    Ok(counts)
}

/// One page of tickets (of one requester, or all), newest activity first.
fn ticket_list(
    c: &Connection,
    requester: Option<&str>,
    filter: TicketFilter,
    page: u32,
) -> anyhow::Result<TicketListPage> {
    let counts = FilterCounts::from_statuses(&counts_by_status(c, requester)?);
    let total = counts.of(filter).max(0) as u64;
    let page_count = total.div_ceil(u64::from(PAGE_SIZE)).max(1) as u32;
    let page = page.clamp(1, page_count);
    let offset = i64::from(page - 1) * i64::from(PAGE_SIZE);
    let owner = if requester.is_some() {
        "t.requester = ?1"
    } else {
        "?1 IS NULL"
    };
    let sql = format!(
        "SELECT t.number, t.subject, t.status, t.requester, t.assignee, t.created_at,
                t.last_activity_at
         FROM tickets t
         WHERE {owner} AND t.status IN ({statuses})
         ORDER BY t.last_activity_at DESC, t.number DESC
         LIMIT ?2 OFFSET ?3",
        statuses = filter.sql_statuses()
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![requester, PAGE_SIZE, offset], |r| {
        let status: String = r.get(2)?;
        Ok(TicketRow {
            number: TicketNumber(r.get(0)?),
            subject: r.get(1)?,
            status: Status::parse(&status).unwrap_or(Status::Open),
            requester: r.get(3)?,
            assignee: r.get(4)?,
            created_at: r.get(5)?,
            last_activity_at: r.get(6)?,
        })
    })?;
    Ok(TicketListPage {
        rows: rows.collect::<Result<Vec<_>, _>>()?,
        counts,
        filter,
        page,
        page_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_and_split_the_statuses() {
        for f in TicketFilter::ALL {
            assert_eq!(TicketFilter::parse(f.as_str()), Some(f));
        }
        assert_eq!(TicketFilter::parse("nonsense"), None);
        for s in Status::ALL {
            assert!(TicketFilter::All.includes(s));
            assert_ne!(
                TicketFilter::OpenOrPending.includes(s),
                TicketFilter::ResolvedOrClosed.includes(s),
                "{s} is under exactly one of the two tabs"
            );
        }
    }

    #[test]
    fn counts_add_up_per_tab() {
        let by_status = BTreeMap::from([
            (Status::New, 1),
            (Status::Open, 2),
            (Status::Pending, 3),
            (Status::Resolved, 4),
            (Status::Closed, 5),
        ]);
        let counts = FilterCounts::from_statuses(&by_status);
        assert_eq!(counts.all, 15);
        assert_eq!(counts.open_or_pending, 6);
        assert_eq!(counts.resolved_or_closed, 9);
    }
}
