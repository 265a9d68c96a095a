//! Several daemons on one PostgreSQL database, as two stores in one test:
//! the same mail taken by both at once is stored once, the outbox is never
//! claimed twice. Runs only with `POSTDESK_TEST_POSTGRES` (scripts/test).

use std::sync::{Arc, Barrier};

use chrono::Utc;

use super::{IngestReport, MailSource, Store, test_postgres};
use crate::ingest::Pipeline;
use crate::settings::{DatabaseSettings, Secret, Settings};

/// Two stores (two daemons) on one database, a pipeline, their files' dir.
type TwoDaemons = (Arc<Store>, Arc<Store>, Arc<Pipeline>, tempfile::TempDir);

/// Two stores (two daemons) on one fresh database, and a pipeline.
fn two_daemons() -> Option<TwoDaemons> {
    let url = test_postgres::fresh_database().unwrap()?;
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        let settings = DatabaseSettings {
            path: dir.path().join(name),
            url: Secret::new(url.clone()),
            ca_file: String::new(),
        };
        Arc::new(Store::connect(&settings).unwrap())
    };
    let (a, b) = (open("a.db"), open("b.db"));
    let env = vec![(
        "POSTDESK__SUPPORT__ADDRESS".to_string(),
        "tickets@support.test".to_string(),
    )];
    let settings = Settings::load_with_env(None, env).unwrap();
    let pipeline = Arc::new(Pipeline::new(&settings, "unit-secret-unit-secret"));
    Some((a, b, pipeline, dir))
}

fn mail(n: usize) -> Vec<u8> {
    format!(
        "From: Ann <ann{n}@customer.test>\r\nTo: tickets@support.test\r\n\
         Subject: Printer {n}\r\nMessage-ID: <race{n}@customer.test>\r\n\r\nHelp {n}.\r\n"
    )
    .into_bytes()
}

#[test]
fn one_mail_taken_by_two_daemons_at_once_is_stored_once() {
    let Some((a, b, pipeline, _dir)) = two_daemons() else {
        eprintln!("PostgreSQL only: set POSTDESK_TEST_POSTGRES");
        return;
    };
    const MAILS: usize = 40;
    let start = Arc::new(Barrier::new(2));
    let run = |store: Arc<Store>| {
        let (pipeline, start) = (Arc::clone(&pipeline), Arc::clone(&start));
        std::thread::spawn(move || {
            start.wait();
            (0..MAILS)
                .map(|n| {
                    store
                        .ingest_mail(&pipeline, mail(n), &MailSource::Pipe, Utc::now())
                        .unwrap()
                })
                .collect::<Vec<_>>()
        })
    };
    let (from_a, from_b) = (run(Arc::clone(&a)), run(Arc::clone(&b)));
    let (from_a, from_b) = (from_a.join().unwrap(), from_b.join().unwrap());
    for (n, (x, y)) in from_a.iter().zip(&from_b).enumerate() {
        let new = |r: &IngestReport| matches!(r, IngestReport::NewTicket { .. });
        let dup = |r: &IngestReport| matches!(r, IngestReport::Duplicate);
        assert!(
            (new(x) && dup(y)) || (dup(x) && new(y)),
            "mail {n}: one new ticket and one duplicate, got {x:?} and {y:?}"
        );
    }
    let tickets = a.list_tickets(None).unwrap();
    assert_eq!(tickets.len(), MAILS, "one ticket per mail");
    let mut numbers: Vec<i64> = tickets.iter().map(|t| t.number.0).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), MAILS, "ticket numbers are unique");
    assert!(
        a.quarantine_list().unwrap().is_empty(),
        "nothing quarantined"
    );
}

#[test]
fn two_daemons_never_claim_one_outgoing_mail() {
    let Some((a, b, pipeline, _dir)) = two_daemons() else {
        eprintln!("PostgreSQL only: set POSTDESK_TEST_POSTGRES");
        return;
    };
    for n in 0..30 {
        a.ingest_mail(&pipeline, mail(n), &MailSource::Pipe, Utc::now())
            .unwrap();
    }
    let start = Arc::new(Barrier::new(2));
    let claim = |store: Arc<Store>| {
        let start = Arc::clone(&start);
        std::thread::spawn(move || {
            start.wait();
            let mut ids = Vec::new();
            loop {
                let batch = store.claim_outbox(Utc::now(), 3).unwrap();
                if batch.is_empty() {
                    return ids;
                }
                ids.extend(batch.iter().map(|item| item.id));
            }
        })
    };
    let (from_a, from_b) = (claim(Arc::clone(&a)), claim(Arc::clone(&b)));
    let (from_a, from_b) = (from_a.join().unwrap(), from_b.join().unwrap());
    let mut all: Vec<i64> = from_a.iter().chain(&from_b).copied().collect();
    let claimed = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), claimed, "no row claimed by both");
    assert_eq!(claimed, 30, "each confirmation claimed once");
}

#[test]
fn a_mail_blocked_by_the_database_is_tried_again_not_quarantined() {
    let Some(url) = test_postgres::fresh_database().unwrap() else {
        eprintln!("PostgreSQL only: set POSTDESK_TEST_POSTGRES");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let settings = DatabaseSettings {
        path: dir.path().join("t.db"),
        url: Secret::new(url.clone()),
        ca_file: String::new(),
    };
    drop(Store::connect(&settings).unwrap()); // creates the tables
    // Another session holds the tickets (not the quarantine: a wrongly
    // quarantined mail would go through); this database gives up waiting
    // for a lock after 200 ms (SQLSTATE 55P03).
    let (locked, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let holder = {
        let (url, locked, release) = (url.clone(), Arc::clone(&locked), Arc::clone(&release));
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let db = url.rsplit('/').next().unwrap().to_string();
            c.batch_execute(&format!("ALTER DATABASE {db} SET lock_timeout = '200ms'"))
                .unwrap();
            c.batch_execute("BEGIN; LOCK TABLE tickets IN ACCESS EXCLUSIVE MODE")
                .unwrap();
            locked.wait();
            release.wait();
            c.batch_execute("COMMIT").unwrap();
        })
    };
    locked.wait();
    let store = Store::connect(&settings).unwrap();
    let env = vec![(
        "POSTDESK__SUPPORT__ADDRESS".to_string(),
        "tickets@support.test".to_string(),
    )];
    let pipeline = Pipeline::new(
        &Settings::load_with_env(None, env).unwrap(),
        "unit-secret-unit-secret",
    );
    let err = store
        .ingest_mail(&pipeline, mail(1), &MailSource::Pipe, Utc::now())
        .expect_err("the lock holds the mail back");
    assert!(super::db::is_transient(&err), "{err:#}");
    release.wait();
    holder.join().unwrap();
    assert!(
        store.quarantine_list().unwrap().is_empty(),
        "nothing quarantined"
    );
    let report = store
        .ingest_mail(&pipeline, mail(1), &MailSource::Pipe, Utc::now())
        .unwrap();
    assert!(
        matches!(report, IngestReport::NewTicket { .. }),
        "{report:?}"
    );
}

#[test]
fn a_page_read_after_the_server_dropped_its_connections_succeeds() {
    let Some(url) = test_postgres::fresh_database().unwrap() else {
        eprintln!("PostgreSQL only: set POSTDESK_TEST_POSTGRES");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&DatabaseSettings {
        path: dir.path().join("t.db"),
        url: Secret::new(url.clone()),
        ca_file: String::new(),
    })
    .unwrap();
    assert!(
        store.list_tickets(None).unwrap().is_empty(),
        "a reader is pooled"
    );
    // As a server restart does: every session of this database ends.
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .unwrap();
    })
    .join()
    .unwrap();
    assert!(
        store.list_tickets(None).unwrap().is_empty(),
        "read on a new connection"
    );
}
