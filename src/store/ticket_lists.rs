//! Ticket lists: the requester's tickets and the agents' queue, with the
//! counts of each filter tab, newest activity first, 50 a page. Reads only,
//! on reader connections. A requester's list must only ever hold tickets
//! whose requester the link names.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::db::{OptionalExtension, Row, Tx};
use crate::sql_params as params;
use chrono::{DateTime, Utc};

use super::Store;
use super::links::link_requester;
use super::tickets::snapshot;
use crate::domain::{Status, TicketNumber};

/// One count per status of [`Status::ALL`], in its order, over the rows
/// a query's condition picks: one pass over an owner's range of its index,
/// where a `GROUP BY status` sorted that range in a temporary b-tree first
/// (~2% of a requester's list, the sorter's allocations with it). Only
/// the words the store writes count (`Status::as_str`), as the list rows'
/// own status condition reads them; the old count also took another case
/// or spaces, which no row of ours has. A macro, so that each query is
/// one constant text.
macro_rules! counts_per_status {
    () => {
        "count(*) FILTER (WHERE status = 'new'),
         count(*) FILTER (WHERE status = 'open'),
         count(*) FILTER (WHERE status = 'pending'),
         count(*) FILTER (WHERE status = 'resolved'),
         count(*) FILTER (WHERE status = 'closed')"
    };
}

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

    /// The SQL condition on `t.status` of this tab (constants only): one
    /// comparison per status, not `IN (…)`, for which SQLite builds a
    /// temporary b-tree of the words on every run of the query (a page
    /// cache opened, filled and freed: ~7% of the server's time on `/r`).
    fn sql_condition(self) -> &'static str {
        match self {
            TicketFilter::All => {
                "(t.status = 'new' OR t.status = 'open' OR t.status = 'pending'
                  OR t.status = 'resolved' OR t.status = 'closed')"
            }
            TicketFilter::OpenOrPending => {
                "(t.status = 'new' OR t.status = 'open' OR t.status = 'pending')"
            }
            TicketFilter::ResolvedOrClosed => "(t.status = 'resolved' OR t.status = 'closed')",
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

/// One row of a ticket list. The requester and the queue are shared with
/// the rows before that have the same (every row of a requester's list
/// has its requester): one string each, not one a row.
#[derive(Debug, Clone)]
pub struct TicketRow {
    pub number: TicketNumber,
    pub subject: String,
    pub status: Status,
    pub requester: Arc<str>,
    pub assignee: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub queue: Arc<str>,
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
            snapshot(c, || {
                // The usual list is one statement with the token read
                // inside it (on PostgreSQL each statement is a round trip).
                let key = crate::tokens::link_key(token);
                let whole = match page {
                    0 | 1 => whole_list(c, Owner::RequesterLink(&key), filter)?,
                    _ => None,
                };
                if let Some((list, Some(requester))) = whole {
                    let requester = requester.to_string();
                    return Ok(Some(RequesterPage { requester, list }));
                }
                // No row read: an unknown link, or a requester without
                // tickets, whose empty list that read is. A longer list or
                // a later page: paged, the whole list not read again.
                let Some(requester) = requester_of(c, &key)? else {
                    return Ok(None);
                };
                let list = match whole {
                    Some((empty, None)) => empty,
                    _ => paged_list(c, Owner::Requester(&requester), filter, page)?,
                };
                Ok(Some(RequesterPage { requester, list }))
            })
        })
    }

    /// The agents' queue: every ticket, newest activity first.
    pub fn agent_queue(&self, filter: TicketFilter, page: u32) -> anyhow::Result<TicketListPage> {
        self.agent_queue_of(None, filter, page)
    }

    /// [`Store::agent_queue`] of one queue (support address) where given.
    pub fn agent_queue_of(
        &self,
        queue: Option<&str>,
        filter: TicketFilter,
        page: u32,
    ) -> anyhow::Result<TicketListPage> {
        let owner = queue.map_or(Owner::All, Owner::Queue);
        self.read(|c| ticket_list(c, owner, filter, page))
    }
}

/// A stored time, read by hand where it is as the store writes it
/// (`2024-01-02 00:41:00+00:00`, a `T` or a fraction allowed, at UTC):
/// the generic reading tries chrono format strings, which was most of
/// the time a 50-row list spent in the store. Anything else is the
/// column's own reading, as before.
pub(super) fn stored_time(r: &Row, idx: usize) -> anyhow::Result<DateTime<Utc>> {
    match utc_time(r.text(idx)?) {
        Some(at) => Ok(at),
        None => r.get(idx),
    }
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.fraction](+00:00|Z)`, or `None`.
fn utc_time(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let rest = b.strip_suffix(b"+00:00").or_else(|| b.strip_suffix(b"Z"))?;
    if rest.len() < 19 || !matches!(rest[10], b' ' | b'T') {
        return None;
    }
    let punct = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if punct.iter().any(|&(i, c)| rest[i] != c) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = rest.get(range)?;
        digits.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let nanos = match &rest[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            number(20..rest.len())? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(number(0..4)?).ok()?,
        number(5..7)?,
        number(8..10)?,
    )?;
    let time = chrono::NaiveTime::from_hms_nano_opt(
        number(11..13)?,
        number(14..16)?,
        number(17..19)?,
        nanos,
    )?;
    Some(date.and_time(time).and_utc())
}

/// Whose tickets a list holds.
#[derive(Debug, Clone, Copy)]
enum Owner<'a> {
    All,
    Requester(&'a str),
    /// The requester a live requester link names, by the link's stored
    /// key (`tokens::link_key`).
    RequesterLink(&'a str),
    Queue(&'a str),
}

impl Owner<'_> {
    /// The SQL condition on `t` with `?1` bound to [`Owner::value`].
    fn condition(self) -> &'static str {
        match self {
            Owner::All => "CAST(?1 AS TEXT) IS NULL",
            Owner::Requester(_) => "t.requester = ?1",
            Owner::RequesterLink(_) => concat!("t.requester = ", link_requester!()),
            Owner::Queue(_) => "t.queue = ?1",
        }
    }

    fn value(self) -> Option<String> {
        match self {
            Owner::All => None,
            Owner::Requester(v) | Owner::RequesterLink(v) | Owner::Queue(v) => Some(v.to_string()),
        }
    }
}

/// The requester address a live requester link names, by the link's
/// stored key (`tokens::link_key`).
fn requester_of(c: &Tx, key: &str) -> anyhow::Result<Option<String>> {
    let mut stmt = c.prepare_cached(concat!("SELECT ", link_requester!()))?;
    Ok(stmt
        .query_row([key], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// Tickets per status, of one requester or of all; every status present.
pub(super) fn counts_by_status(
    c: &Tx,
    requester: Option<&str>,
) -> anyhow::Result<BTreeMap<Status, i64>> {
    if let Some(requester) = requester {
        let sql = concat!(
            "SELECT ",
            counts_per_status!(),
            " FROM tickets WHERE requester = ?1"
        );
        return counts_of(c, sql, requester);
    }
    let mut counts: BTreeMap<Status, i64> = Status::ALL.into_iter().map(|s| (s, 0)).collect();
    let mut stmt = c.prepare_cached("SELECT status, count(*) FROM tickets GROUP BY status")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (status, n) = row?;
        if let Ok(status) = Status::parse(&status) {
            *counts.entry(status).or_default() += n;
        }
    }
    Ok(counts)
}

/// Tickets per status of one queue; every other owner as
/// [`counts_by_status`].
fn owned_by_status(c: &Tx, owner: Owner) -> anyhow::Result<BTreeMap<Status, i64>> {
    let Owner::Queue(queue) = owner else {
        let requester = owner.value();
        return counts_by_status(c, requester.as_deref());
    };
    let sql = concat!(
        "SELECT ",
        counts_per_status!(),
        " FROM tickets WHERE queue = ?1"
    );
    counts_of(c, sql, queue)
}

/// The counts of a `SELECT counts_per_status!() … WHERE … = ?1`, by status.
fn counts_of(c: &Tx, sql: &str, owner: &str) -> anyhow::Result<BTreeMap<Status, i64>> {
    let counts = c.prepare_cached(sql)?.query_row([owner], |r| {
        let mut counts = BTreeMap::new();
        for (idx, status) in Status::ALL.into_iter().enumerate() {
            counts.insert(status, r.get::<_, i64>(idx)?);
        }
        Ok(counts)
    })?;
    Ok(counts)
}

/// One page of tickets (of one requester, one queue, or all), newest
/// activity first.
fn ticket_list(
    c: &Tx,
    owner: Owner,
    filter: TicketFilter,
    page: u32,
) -> anyhow::Result<TicketListPage> {
    // Most customers have a few tickets: their whole list is one range
    // read, counts and all. A later page asked for means a longer list.
    if matches!(owner, Owner::Requester(_))
        && page <= 1
        && let Some((list, _)) = whole_list(c, owner, filter)?
    {
        return Ok(list);
    }
    paged_list(c, owner, filter, page)
}

/// The list of an owner with at most one page of tickets, read in one
/// statement (the counts from its rows), and the requester of the rows
/// read (`None` when none was); `None` for a longer list. The same page
/// as [`paged_list`]'s: a row counts and is listed only with a status
/// word the store writes, as that condition reads them.
fn whole_list(
    c: &Tx,
    owner: Owner,
    filter: TicketFilter,
) -> anyhow::Result<Option<(TicketListPage, Option<Arc<str>>)>> {
    let sql = whole_sql(owner);
    let mut stmt = c.prepare_cached(&sql)?;
    let mut shared = (None, None);
    let mut by_status = BTreeMap::new();
    let mut rows = Vec::with_capacity(PAGE_SIZE as usize);
    let found = stmt.query_map(params![owner.value(), PAGE_SIZE + 1], |r| {
        let row = list_row(r, &mut shared)?;
        // Exactly the word the status writes (the row's reading also
        // takes another case or spaces).
        let written = row.status.as_str() == r.text(2)?;
        Ok(written.then_some(row))
    })?;
    for (read, row) in found.enumerate() {
        if read == PAGE_SIZE as usize {
            return Ok(None);
        }
        if let Some(row) = row? {
            *by_status.entry(row.status).or_default() += 1;
            if filter.includes(row.status) {
                rows.push(row);
            }
        }
    }
    let list = TicketListPage {
        rows,
        counts: FilterCounts::from_statuses(&by_status),
        filter,
        page: 1,
        page_count: 1,
    };
    Ok(Some((list, shared.0)))
}

/// One page of any list: the counts, then the page's rows.
fn paged_list(
    c: &Tx,
    owner: Owner,
    filter: TicketFilter,
    page: u32,
) -> anyhow::Result<TicketListPage> {
    let counts = FilterCounts::from_statuses(&owned_by_status(c, owner)?);
    let total = counts.of(filter).max(0) as u64;
    let page_count = total.div_ceil(u64::from(PAGE_SIZE)).max(1) as u32;
    let page = page.clamp(1, page_count);
    let offset = i64::from(page - 1) * i64::from(PAGE_SIZE);
    let sql = list_sql(owner, filter);
    let mut stmt = c.prepare_cached(&sql)?;
    let mut shared = (None, None);
    let rows = stmt.query_map(params![owner.value(), PAGE_SIZE, offset], |r| {
        list_row(r, &mut shared)
    })?;
    Ok(TicketListPage {
        rows: rows.collect::<Result<Vec<_>, _>>()?,
        counts,
        filter,
        page,
        page_count,
    })
}

/// A list's columns, as [`list_row`] reads them.
const LIST_COLUMNS: &str = "t.number, t.subject, t.status, t.requester, t.assignee,
    t.created_at, t.last_activity_at, t.queue";

/// A row of [`LIST_COLUMNS`]; `shared` holds the last requester and queue
/// (see [`shared_text`]).
fn list_row(
    r: &Row,
    shared: &mut (Option<Arc<str>>, Option<Arc<str>>),
) -> anyhow::Result<TicketRow> {
    Ok(TicketRow {
        number: TicketNumber(r.get(0)?),
        subject: r.get(1)?,
        status: Status::parse(r.text(2)?).unwrap_or(Status::Open),
        requester: shared_text(r, 3, &mut shared.0)?,
        assignee: r.get(4)?,
        created_at: stored_time(r, 5)?,
        last_activity_at: stored_time(r, 6)?,
        queue: shared_text(r, 7, &mut shared.1)?,
    })
}

/// [`whole_list`]'s query: `?1` the owner, `?2` how many rows at most.
fn whole_sql(owner: Owner) -> String {
    format!(
        "SELECT {LIST_COLUMNS} FROM tickets t WHERE {owner}
         ORDER BY t.last_activity_at DESC, t.number DESC
         LIMIT ?2",
        owner = owner.condition()
    )
}

/// The page's query: `?1` the owner, `?2` the page size, `?3` the offset.
/// Of a requester, SQLite answers it from the requester index alone
/// (V17; a test holds it to that).
fn list_sql(owner: Owner, filter: TicketFilter) -> String {
    format!(
        "SELECT {LIST_COLUMNS}
         FROM tickets t
         WHERE {owner} AND {statuses}
         ORDER BY t.last_activity_at DESC, t.number DESC
         LIMIT ?2 OFFSET ?3",
        statuses = filter.sql_condition(),
        owner = owner.condition()
    )
}

/// A text column as a shared string: `last`, the previous row's, where
/// the text is the same, else a new one that becomes `last`.
fn shared_text(r: &Row, idx: usize, last: &mut Option<Arc<str>>) -> anyhow::Result<Arc<str>> {
    let text = r.text(idx)?;
    match last {
        Some(shared) if **shared == *text => Ok(Arc::clone(shared)),
        _ => Ok(Arc::clone(last.insert(Arc::from(text)))),
    }
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
    fn stored_times_read_by_hand_are_what_chrono_reads() {
        for text in [
            "2024-01-02 00:41:00+00:00",
            "2024-01-02T00:41:00Z",
            "2024-02-29 23:59:59.5+00:00",
            "2024-02-29 23:59:59.123456789+00:00",
            "0001-01-01 00:00:00+00:00",
        ] {
            let by_chrono = DateTime::parse_from_str(text, "%F %T%.f%#z")
                .or_else(|_| DateTime::parse_from_str(text, "%FT%T%.f%#z"))
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(utc_time(text), Some(by_chrono), "{text}");
        }
        // Left to the generic reading: other zones, no zone, nonsense.
        for text in [
            "2024-01-02 00:41:00+02:00",
            "2024-01-02 00:41:00",
            "2024-13-02 00:41:00+00:00",
            "2024-01-02 00:41:00.+00:00",
            "2024-01-02 00:41:00.1234567890+00:00",
            "2024-01-0x 00:41:00+00:00",
            "Z",
        ] {
            assert_eq!(utc_time(text), None, "{text}");
        }
    }

    #[test]
    fn the_counts_per_status_follow_status_all() {
        let columns: Vec<&str> = counts_per_status!().split(',').collect();
        assert_eq!(columns.len(), Status::ALL.len());
        for (column, status) in columns.iter().zip(Status::ALL) {
            let word = format!("status = '{}')", status.as_str());
            assert!(column.contains(&word), "{column} counts {status}");
        }
    }

    /// `/r` reads no table row: the counts, every tab's page and the whole
    /// list are one range of `tickets_requester_activity` (V17 put the
    /// subject in it), with no temporary b-tree.
    /// A column added to the list but not to the index fails this.
    #[test]
    fn the_requester_list_reads_the_requester_index_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("desk.db");
        drop(Store::open_file(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let counts = concat!(
            "SELECT ",
            counts_per_status!(),
            " FROM tickets WHERE requester = ?1"
        );
        let owner = Owner::Requester("ann@customer.test");
        let link = Owner::RequesterLink("key");
        let mut queries = vec![counts.to_string(), whole_sql(owner), whole_sql(link)];
        queries.extend(TicketFilter::ALL.map(|f| list_sql(owner, f)));
        for sql in queries {
            // Column `column` of each row `EXPLAIN…` gives for `sql`, its
            // parameters all NULL.
            let explain = |how: &str, column: usize| -> Vec<String> {
                let mut stmt = conn.prepare(&format!("{how} {sql}")).unwrap();
                let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
                stmt.query_map(rusqlite::params_from_iter(nulls), |r| {
                    r.get::<_, String>(column)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
            };
            // No temporary b-tree built on each run (as `IN (…)` of three
            // or more words made one).
            let opcodes = explain("EXPLAIN", 1);
            assert!(
                !opcodes.iter().any(|o| o == "OpenEphemeral"),
                "{opcodes:?} for {sql}"
            );
            let mut plan = explain("EXPLAIN QUERY PLAN", 3);
            // Through a link, the link's one row is read by its key, once
            // (a subquery of no row of the list's).
            if sql.contains("access_tokens") {
                let token = [
                    "SCALAR SUBQUERY",
                    "SEARCH k USING INDEX sqlite_autoindex_access_tokens_1 (token_hash=?)",
                ];
                for step in token {
                    let at = plan.iter().position(|p| p.starts_with(step));
                    let at = at.unwrap_or_else(|| panic!("{step} not in {plan:?} for {sql}"));
                    plan.remove(at);
                }
            }
            // One step, no sort after it: the index is in the list's order.
            assert_eq!(plan.len(), 1, "{plan:?} for {sql}");
            assert!(
                plan[0].contains("USING COVERING INDEX tickets_requester_activity (requester=?)"),
                "{plan:?} for {sql}"
            );
        }
    }

    /// A requester's whole list read in one statement is the very page
    /// the counts and the paged query give, for every tab, up to one page
    /// of tickets; past that the fast read steps aside. Rows with a word
    /// the store does not write (another case, nonsense) are neither
    /// counted nor listed by either, and ties in time keep their order.
    /// The requester's link opens that page (and the second, where there
    /// is one) too, whichever read answers, and a revoked or unknown link
    /// none.
    #[test]
    fn a_whole_list_read_at_once_is_the_paged_list() {
        use crate::ingest::Pipeline;
        use crate::settings::Settings;
        use crate::store::MailSource;
        let env = vec![(
            "POSTDESK__SUPPORT__ADDRESS".to_string(),
            "tickets@support.test".to_string(),
        )];
        let settings = Settings::load_with_env(None, env).unwrap();
        let pipeline = Pipeline::new(&settings, "unit-secret-unit-secret");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let base = Utc::now();
        let words = [
            "new", "open", "pending", "resolved", "closed", "Open", "weird",
        ];
        let mut made = 0;
        let mut add = |from: &str, n: usize| {
            let id = format!("m{made}");
            let raw = format!(
                "From: {from}\r\nTo: tickets@support.test\r\nSubject: Case {made}\r\n\
                 Message-ID: <{id}@customer.test>\r\n\r\nText {made}.\r\n"
            );
            // Three tickets a second: ties in the list's time.
            let at = base + chrono::Duration::seconds(made / 3);
            let report = store
                .ingest_mail(&pipeline, raw.into_bytes(), &MailSource::Pipe, at)
                .unwrap();
            let crate::store::IngestReport::NewTicket { number, .. } = report else {
                panic!("not a new ticket: {report:?}");
            };
            let number = number.0;
            let word = words[n % words.len()];
            store
                .write()
                .unwrap()
                .execute(
                    "UPDATE tickets SET status = ?1 WHERE number = ?2",
                    params![word, number],
                )
                .unwrap();
            made += 1;
        };
        for n in 0..3 {
            add("bob@customer.test", n);
        }
        // A requester link of ann's made by hand (her tickets come later:
        // a link whose requester has none still opens an empty list).
        let link = |requester: &str| {
            let token = crate::tokens::link_token(base).unwrap();
            store
                .write()
                .unwrap()
                .execute(
                    "INSERT INTO access_tokens (token_hash, scope, requester, created_at)
                     VALUES (?1, 'requester', ?2, ?3)",
                    params![crate::tokens::link_key(&token), requester, base],
                )
                .unwrap();
            token
        };
        let ann_link = link("ann@customer.test");
        let bob_link = link("bob@customer.test");
        let ann = Owner::Requester("ann@customer.test");
        let mut had = 0;
        for target in [0, 1, 8, 50, 51, 64, 120] {
            while had < target {
                add("ann@customer.test", had);
                had += 1;
            }
            for filter in TicketFilter::ALL {
                let paged = store.read(|c| paged_list(c, ann, filter, 1)).unwrap();
                let whole = store.read(|c| whole_list(c, ann, filter)).unwrap();
                let whole = whole.map(|(list, requester)| {
                    let expected = (target > 0).then_some("ann@customer.test");
                    assert_eq!(requester.as_deref(), expected, "{target}");
                    list
                });
                // Through ann's link: the same list, by whichever read.
                let page = store.requester_page(&ann_link, filter, 1).unwrap();
                let page = page.expect("a live link opens its list, even an empty one");
                assert_eq!(page.requester, "ann@customer.test");
                assert_eq!(
                    format!("{:?}", page.list),
                    format!("{paged:?}"),
                    "{target} {filter:?}"
                );
                // And its second page (clamped to the last there is).
                let second = store.requester_page(&ann_link, filter, 2).unwrap();
                let second = second.expect("a live link opens every page");
                let paged_second = store.read(|c| paged_list(c, ann, filter, 2)).unwrap();
                assert_eq!(
                    format!("{:?}", second.list),
                    format!("{paged_second:?}"),
                    "{target} {filter:?}, page 2"
                );
                let listed = store.read(|c| ticket_list(c, ann, filter, 1)).unwrap();
                assert_eq!(
                    format!("{listed:?}"),
                    format!("{paged:?}"),
                    "{target} {filter:?}"
                );
                match whole {
                    Some(whole) => {
                        assert!(target <= PAGE_SIZE as usize, "{target}");
                        assert_eq!(format!("{whole:?}"), format!("{paged:?}"), "{target}");
                    }
                    None => assert!(target > PAGE_SIZE as usize, "{target}"),
                }
                let counted = paged.counts.all as usize;
                assert_eq!(
                    counted,
                    target - target / 7 * 2 - (target % 7).saturating_sub(5)
                );
                assert!(
                    paged
                        .rows
                        .iter()
                        .all(|r| &*r.requester == "ann@customer.test")
                );
            }
        }
        // Bob's three tickets, through his link, in its one statement; once
        // revoked, the link opens nothing, nor does one never issued.
        let bob = store
            .requester_page(&bob_link, TicketFilter::All, 1)
            .unwrap();
        let rows = bob.map(|p| p.list.rows).unwrap_or_default();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| &*r.requester == "bob@customer.test"));
        store
            .write()
            .unwrap()
            .execute(
                "UPDATE access_tokens SET revoked_at = ?1 WHERE token_hash = ?2",
                params![base, crate::tokens::link_key(&bob_link)],
            )
            .unwrap();
        let unknown = crate::tokens::link_token(base).unwrap();
        for token in [&bob_link, &unknown] {
            let page = store.requester_page(token, TicketFilter::All, 1).unwrap();
            assert!(page.is_none());
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
