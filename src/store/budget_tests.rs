//! Tests of the per-mail time budget (`budget.rs`).
use std::collections::HashMap;
use std::sync::Mutex;

use chrono::Utc;

use super::*;
use crate::settings::Settings;
use crate::store::{IngestReport, MailSource, Store};

/// A mail starting with `X-Test-Slow: KIND` takes [`SLOW`] to prepare
/// (unless KIND starts with `count`):
/// the deliberately slow mail of the tests (real steps are all
/// linear). Each test has its KIND, so that tests running at once do
/// not see each other's calls.
const SLOW_PREFIX: &[u8] = b"X-Test-Slow: ";
const SLOW: Duration = Duration::from_secs(4);

/// Per KIND: calls, now running, most running at once.
static SLOW_CALLS: Mutex<Option<HashMap<String, [usize; 3]>>> = Mutex::new(None);

fn with_kind<T>(kind: &str, f: impl FnOnce(&mut [usize; 3]) -> T) -> T {
    let mut all = SLOW_CALLS.lock().unwrap_or_else(|p| p.into_inner());
    f(all
        .get_or_insert_default()
        .entry(kind.to_string())
        .or_default())
}

pub(in crate::store) fn slow_hook(raw: &[u8]) {
    let Some(rest) = raw.strip_prefix(SLOW_PREFIX) else {
        return;
    };
    let end = rest.iter().position(|&b| b == b'\r').unwrap_or(0);
    let kind = String::from_utf8_lossy(&rest[..end]).into_owned();
    with_kind(&kind, |c| {
        c[0] += 1;
        c[1] += 1;
        c[2] = c[2].max(c[1]);
    });
    // KIND "count…": only counted, not slow.
    if !kind.starts_with("count") {
        std::thread::sleep(SLOW);
    }
    with_kind(&kind, |c| c[1] -= 1);
}

/// How often mails of `kind` were prepared, and the most at once.
pub(in crate::store) fn slow_calls(kind: &str) -> (usize, usize) {
    with_kind(kind, |c| (c[0], c[2]))
}

pub(in crate::store) fn desk(budget: Duration) -> (tempfile::TempDir, Store, Pipeline) {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "POSTDESK__SUPPORT__ADDRESS".to_string(),
        "tickets@support.test".to_string(),
    )];
    let settings = Settings::load_with_env(None, env).unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let mut pipeline = Pipeline::new(&settings, "unit-secret-unit-secret");
    pipeline.max_mail_time = budget;
    (dir, store, pipeline)
}

fn mail(uid: u32, slow: bool) -> FetchedMail {
    slow_mail(uid, if slow { Some("yes") } else { None })
}

/// A customer's mail; `Some(kind)`: slow, of that kind.
pub(in crate::store) fn slow_mail(uid: u32, kind: Option<&str>) -> FetchedMail {
    let mark = kind.map(|k| format!("X-Test-Slow: {k}\r\n"));
    let text = format!(
        "{}From: ann{uid}@customer.test\r\nTo: tickets@support.test\r\n\
         Subject: help {uid}\r\nMessage-ID: <m{uid}@customer.test>\r\n\r\nPlease.\r\n",
        mark.unwrap_or_default()
    );
    FetchedMail::whole(uid, text.into_bytes())
}

#[test]
fn a_mail_over_the_budget_is_quarantined_and_blocks_nothing_nor_comes_back() {
    let (_dir, store, pipeline) = desk(Duration::from_secs(1));
    let batch = vec![mail(1, false), mail(2, true), mail(3, false)];
    let reports = store
        .ingest_batch(&pipeline, "INBOX", 1, batch, Utc::now())
        .unwrap();
    assert!(
        matches!(reports[0], IngestReport::NewTicket { .. }),
        "{reports:?}"
    );
    match &reports[1] {
        IngestReport::Quarantined { reason } => {
            assert!(reason.starts_with(OVER_BUDGET), "{reason}")
        }
        other => panic!("the slow mail was not quarantined: {other:?}"),
    }
    assert!(
        matches!(reports[2], IngestReport::NewTicket { .. }),
        "{reports:?}"
    );

    // A restart (or a UIDVALIDITY change) hands it over again: it is
    // known, not prepared a second time, and no second quarantine.
    let before = slow_calls("yes").0;
    let same_bytes = FetchedMail {
        uid: 7,
        ..mail(2, true)
    };
    let again = store
        .ingest_batch(&pipeline, "INBOX", 2, vec![same_bytes], Utc::now())
        .unwrap();
    assert_eq!(again, vec![IngestReport::Duplicate]);
    assert_eq!(slow_calls("yes").0, before);
    assert_eq!(store.quarantine_list().unwrap().len(), 1);
}

#[test]
fn a_header_only_mail_is_quarantined_as_oversize_and_a_retry_keeps_it() {
    let (_dir, store, mut pipeline) = desk(Duration::from_secs(5));
    pipeline.max_message_bytes = 10_000;
    let whole = mail(2, false).raw;
    let header = whole[..whole.len() - "Please.\r\n".len()].to_vec();
    let big = FetchedMail {
        oversize: Some(30_000_000),
        ..FetchedMail::whole(2, header.clone())
    };
    let batch = vec![mail(1, false), big, mail(3, false)];
    let reports = store
        .ingest_batch(&pipeline, "INBOX", 9, batch, Utc::now())
        .unwrap();
    let IngestReport::Quarantined { reason } = &reports[1] else {
        panic!("not quarantined: {reports:?}");
    };
    assert!(
        reason.contains("30000000 bytes, more than the limit of 10000 bytes")
            && reason.contains("the full mail stays on the IMAP server")
            && reason.contains("mailbox INBOX, UID 2"),
        "{reason}"
    );
    assert!(matches!(reports[2], IngestReport::NewTicket { .. }));
    let notices: Vec<(String, String)> = store
        .read(|c| {
            let mut st = c.prepare("SELECT recipients, raw FROM outbox WHERE kind = 'status'")?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    String::from_utf8_lossy(&r.get::<_, Vec<u8>>(1)?).into(),
                ))
            })?;
            rows.collect::<Result<_, _>>()
        })
        .unwrap();
    let notice = notices
        .iter()
        .find(|(to, _)| to == "ann2@customer.test")
        .expect("the sender is told");
    assert!(notice.1.contains("30000000 bytes"), "{}", notice.1);
    assert!(!notice.1.contains("UID"), "no server details to the sender");
    let items = store.quarantine_list().unwrap();
    assert_eq!(items[0].size, 30_000_000, "the declared size is kept");

    // Raising the limit cannot make a ticket of the header alone.
    pipeline.max_message_bytes = 50_000_000;
    let retried = store
        .quarantine_retry(&pipeline, items[0].id, Utc::now())
        .unwrap();
    let Some(crate::store::RetryOutcome::StillQuarantined { reason }) = retried else {
        panic!("the header alone was processed: {retried:?}");
    };
    assert!(reason.contains("postdesk ingest"), "{reason}");
    assert_eq!(store.list_tickets(None).unwrap().len(), 2);
}

#[test]
fn deciding_over_the_budget_is_rolled_back_and_quarantined() {
    let (_dir, store, pipeline) = desk(Duration::ZERO);
    let raw = mail(1, false).raw;
    let report = store
        .ingest_mail(&pipeline, raw.as_slice(), &MailSource::Pipe, Utc::now())
        .unwrap();
    let IngestReport::Quarantined { reason } = report else {
        panic!("not quarantined: {report:?}");
    };
    assert!(reason.starts_with(OVER_BUDGET), "{reason}");
    assert!(
        store.list_tickets(None).unwrap().is_empty(),
        "the ticket was kept"
    );
    let again = store
        .ingest_mail(&pipeline, raw.as_slice(), &MailSource::Pipe, Utc::now())
        .unwrap();
    assert_eq!(again, IngestReport::Duplicate);
}

#[test]
fn slow_mails_in_a_row_never_leave_more_than_two_abandoned_threads() {
    let (_dir, store, pipeline) = desk(Duration::from_secs(1));
    let slow = |uid| slow_mail(uid, Some("bound"));
    let batch = vec![mail(1, false), slow(2), slow(3), slow(4), mail(5, false)];
    let reports = store
        .ingest_batch(&pipeline, "INBOX", 1, batch, Utc::now())
        .unwrap();
    for report in &reports[1..4] {
        let IngestReport::Quarantined { reason } = report else {
            panic!("a slow mail was not quarantined: {reports:?}");
        };
        assert!(reason.starts_with(OVER_BUDGET), "{reason}");
    }
    assert!(matches!(reports[0], IngestReport::NewTicket { .. }));
    assert!(matches!(reports[4], IngestReport::NewTicket { .. }));
    // Unbounded, the three would all be read at once (each takes 4 s,
    // the budget is 1 s); bounded, the third waits for the first (or
    // longer, when another test's thread counts too: the bound is
    // process-wide).
    let (calls, most_at_once) = slow_calls("bound");
    assert_eq!(calls, 3);
    assert!(most_at_once <= 2, "{most_at_once} read at once");
}

#[test]
fn a_gated_preparer_prepares_nothing_ahead_of_the_writer() {
    let (_dir, _store, pipeline) = desk(Duration::from_secs(5));
    let counted = |uid, kind| slow_mail(uid, Some(kind));
    let wait = || std::thread::sleep(Duration::from_millis(300));
    let none = Arc::new(HashSet::new());

    let ahead: Arc<[FetchedMail]> =
        vec![counted(1, "count-ahead"), counted(2, "count-ahead")].into();
    let _ungated = Preparer::start(&pipeline, &ahead, 0, &none, false).unwrap();
    wait();
    assert_eq!(
        slow_calls("count-ahead").0,
        2,
        "ungated, both are prepared at once"
    );

    let mails: Arc<[FetchedMail]> =
        vec![counted(1, "count-gated"), counted(2, "count-gated")].into();
    let gated = Preparer::start(&pipeline, &mails, 0, &none, true).unwrap();
    wait();
    assert_eq!(
        slow_calls("count-gated").0,
        0,
        "prepared before it was asked for"
    );
    let step = gated.next(Duration::from_secs(5)).unwrap();
    assert!(matches!(step, Some(Step::Ready(Ok(_)))));
    wait();
    assert_eq!(
        slow_calls("count-gated").0,
        1,
        "the next mail was prepared ahead"
    );
    gated.skip().unwrap();
    wait();
    assert_eq!(
        slow_calls("count-gated").0,
        1,
        "a skipped mail was prepared"
    );
}

#[test]
fn the_debug_log_says_where_a_batchs_time_went() {
    let (_dir, store, pipeline) = desk(Duration::from_secs(5));
    let batch = vec![mail(1, false), mail(2, false), mail(3, false)];
    let log = crate::logging::capture::log_of("postdesk=debug", || {
        store
            .ingest_batch(&pipeline, "INBOX", 1, batch, Utc::now())
            .unwrap();
    });
    let wrote = log.lines().find(|l| l.contains("Wrote 3 mails in"));
    let wrote = wrote.unwrap_or_else(|| panic!("no line of the writer's time: {log}"));
    assert!(
        wrote.contains("waiting for them to be read (the first: "),
        "{wrote}"
    );
    assert!(log.contains("Committed 3 mails in"), "{log}");
}

/// Waits up to two seconds for mails of `kind` to have been prepared
/// `calls` times.
fn prepared_soon(kind: &str, calls: usize) -> usize {
    for _ in 0..200 {
        if slow_calls(kind).0 >= calls {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    slow_calls(kind).0
}

fn new_tickets(reports: &[IngestReport]) -> bool {
    reports
        .iter()
        .all(|r| matches!(r, IngestReport::NewTicket { .. }))
}

#[test]
fn the_next_batch_is_prepared_while_the_one_before_commits_and_only_once() {
    let (_dir, store, pipeline) = desk(Duration::from_secs(5));
    let counted = |uid| slow_mail(uid, Some("count-next"));
    let next: Arc<[FetchedMail]> = vec![counted(3), counted(4)].into();
    store.upcoming_batch(Arc::clone(&next));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slow_calls("count-next").0, 0, "prepared before its turn");

    let first = vec![mail(1, false), mail(2, false)];
    let reports = store.ingest_batch(&pipeline, "INBOX", 1, first, Utc::now());
    assert!(new_tickets(&reports.unwrap()));
    assert_eq!(
        prepared_soon("count-next", 2),
        2,
        "the next batch was not prepared ahead"
    );

    let reports = store.ingest_batch(&pipeline, "INBOX", 1, next, Utc::now());
    assert!(new_tickets(&reports.unwrap()));
    assert_eq!(slow_calls("count-next").0, 2, "prepared twice");
    assert_eq!(store.list_tickets(None).unwrap().len(), 4);
}

#[test]
fn a_batch_other_than_the_announced_one_drops_it_and_a_crash_stops_reading_ahead() {
    let (dir, store, pipeline) = desk(Duration::from_secs(5));
    let announced: Arc<[FetchedMail]> = vec![slow_mail(3, Some("count-dropped"))].into();
    store.upcoming_batch(Arc::clone(&announced));
    let first = vec![mail(1, false)];
    store
        .ingest_batch(&pipeline, "INBOX", 1, first, Utc::now())
        .unwrap();
    assert_eq!(prepared_soon("count-dropped", 1), 1);
    // Another batch comes first (the same mail fetched again): it is
    // prepared and stored as usual, and the announced one, handed over
    // later, is read again.
    let other: Arc<[FetchedMail]> = vec![slow_mail(3, Some("count-dropped"))].into();
    let reports = store.ingest_batch(&pipeline, "INBOX", 1, other, Utc::now());
    assert!(new_tickets(&reports.unwrap()));
    assert_eq!(slow_calls("count-dropped").0, 2);
    let reports = store.ingest_batch(&pipeline, "INBOX", 1, announced, Utc::now());
    assert_eq!(reports.unwrap(), [IngestReport::Duplicate]);
    assert_eq!(slow_calls("count-dropped").0, 3);

    // After a crash (the marker of a dead process), the batch is gated
    // and nothing is read ahead of it.
    let marker = super::super::inflight::Inflight::beside(&dir.path().join("t.db"));
    std::fs::write(&marker, " \n").unwrap();
    store.upcoming_batch(vec![slow_mail(5, Some("count-crash"))].into());
    store
        .ingest_batch(&pipeline, "INBOX", 1, vec![mail(4, false)], Utc::now())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slow_calls("count-crash").0, 0, "read ahead after a crash");
}

#[test]
fn nothing_is_read_ahead_after_a_mail_read_past_the_budget() {
    let (_dir, store, pipeline) = desk(Duration::from_secs(1));
    let announced = vec![slow_mail(5, Some("count-after-slow"))];
    store.upcoming_batch(announced.into());
    let batch = vec![mail(1, false), slow_mail(2, Some("ahead-slow"))];
    let reports = store
        .ingest_batch(&pipeline, "INBOX", 1, batch, Utc::now())
        .unwrap();
    assert!(
        matches!(reports[1], IngestReport::Quarantined { .. }),
        "{reports:?}"
    );
    // Its thread still reads it (and the quarantined mail is not yet in
    // the list of known slow ones the announced batch would be read with).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(slow_calls("count-after-slow").0, 0, "read ahead");
}
