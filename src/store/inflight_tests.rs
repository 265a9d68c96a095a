//! Tests of the in-flight marker (`inflight.rs`).
use std::time::Duration;

use chrono::Utc;

use super::*;
use crate::store::budget::OVER_BUDGET;
use crate::store::budget::tests::{desk, slow_calls, slow_mail};
use crate::store::{IngestReport, MailSource};
use crate::tokens::sha256_hex;

fn marker_of(dir: &tempfile::TempDir) -> PathBuf {
    Inflight::beside(&dir.path().join("t.db"))
}

/// What a process killed while on `raw` for the `count + 1`th time
/// leaves behind.
fn died_on(dir: &tempfile::TempDir, raw: &[u8], count: u32) {
    std::fs::write(marker_of(dir), format!("{} {count}\n", sha256_hex(raw))).unwrap();
}

fn left(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(marker_of(dir)).unwrap_or_default()
}

#[test]
fn a_mail_that_stopped_the_daemon_three_times_is_quarantined_and_the_next_is_stored() {
    let (dir, store, pipeline) = desk(Duration::from_secs(10));
    let batch = vec![slow_mail(1, None), slow_mail(2, None), slow_mail(3, None)];
    died_on(&dir, &batch[1].raw, 2);
    let reports = store
        .ingest_batch(&pipeline, "INBOX", 1, batch.clone(), Utc::now())
        .unwrap();
    assert!(
        matches!(reports[0], IngestReport::NewTicket { .. }),
        "{reports:?}"
    );
    assert_eq!(
        reports[1],
        IngestReport::Quarantined {
            reason: CRASHED_REASON.to_string()
        }
    );
    assert!(
        matches!(reports[2], IngestReport::NewTicket { .. }),
        "{reports:?}"
    );
    assert_eq!(store.list_tickets(None).unwrap().len(), 2);
    assert_eq!(left(&dir), "", "the committed batch left a marker");

    // Fetched again (a UIDVALIDITY change): one quarantine, no ticket.
    let again = store
        .ingest_batch(&pipeline, "INBOX", 2, vec![batch[1].clone()], Utc::now())
        .unwrap();
    assert_eq!(again, vec![IngestReport::Duplicate]);
    assert_eq!(store.quarantine_list().unwrap().len(), 1);
}

#[test]
fn the_pipe_is_covered_too() {
    let (dir, store, pipeline) = desk(Duration::from_secs(10));
    let raw = slow_mail(1, None).raw;
    died_on(&dir, &raw, 2);
    let report = store
        .ingest_mail(&pipeline, raw, &MailSource::Pipe, Utc::now())
        .unwrap();
    assert_eq!(
        report,
        IngestReport::Quarantined {
            reason: CRASHED_REASON.to_string()
        }
    );
    assert_eq!(left(&dir), "");
}

#[test]
fn a_mail_the_daemon_stopped_on_twice_is_ingested_as_usual() {
    let (dir, store, pipeline) = desk(Duration::from_secs(10));
    let batch = vec![slow_mail(1, None), slow_mail(2, None)];
    died_on(&dir, &batch[0].raw, 1);
    let reports = store
        .ingest_batch(&pipeline, "INBOX", 1, batch, Utc::now())
        .unwrap();
    assert!(
        reports
            .iter()
            .all(|r| matches!(r, IngestReport::NewTicket { .. })),
        "{reports:?}"
    );
    assert!(store.quarantine_list().unwrap().is_empty());
    assert_eq!(left(&dir), "");
}

#[test]
fn the_count_is_raised_before_processing_and_kept_only_for_deaths_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let (bad, good) = (sha256_hex(b"bad"), sha256_hex(b"good"));
    let mut counts = Vec::new();
    for _death in 0..3 {
        let mut inflight = Inflight::open(&db).unwrap();
        assert_eq!(inflight.enter(&bad).unwrap(), None);
        counts.push(left(&dir));
        std::mem::forget(inflight); // killed: nothing runs
    }
    assert_eq!(
        counts,
        [0, 1, 2].map(|n| format!("{bad} {n}\n")),
        "the count on file before each try"
    );
    let mut inflight = Inflight::open(&db).unwrap();
    assert!(inflight.after_crash());
    assert_eq!(inflight.enter(&bad).unwrap(), Some(Refusal::Crashed));

    // A death on another mail in between starts the count again.
    died_on(&dir, b"bad", 1);
    let mut inflight = Inflight::open(&db).unwrap();
    assert_eq!(inflight.enter(&good).unwrap(), None);
    std::mem::forget(inflight);
    let mut inflight = Inflight::open(&db).unwrap();
    assert_eq!(inflight.enter(&bad).unwrap(), None);
    assert_eq!(left(&dir), format!("{bad} 0\n"));

    // The process lives through an error: no death is counted.
    drop(inflight);
    assert_eq!(left(&dir), "");
    assert!(!Inflight::open(&db).unwrap().after_crash());
}

#[test]
fn a_mail_over_the_budget_in_a_batch_that_died_is_quarantined_without_reading_it() {
    let (dir, store, pipeline) = desk(Duration::from_secs(1));
    let slow = slow_mail(2, Some("carried"));
    std::fs::write(
        marker_of(&dir),
        format!(
            "{} 0\n{} over-budget\n",
            sha256_hex(b"x"),
            sha256_hex(&slow.raw)
        ),
    )
    .unwrap();
    let batch = vec![slow_mail(1, None), slow, slow_mail(3, None)];
    let reports = store
        .ingest_batch(&pipeline, "INBOX", 1, batch, Utc::now())
        .unwrap();
    let IngestReport::Quarantined { reason } = &reports[1] else {
        panic!("not quarantined: {reports:?}");
    };
    assert!(reason.starts_with(OVER_BUDGET), "{reason}");
    assert_eq!(slow_calls("carried").0, 0, "it was read again");
    assert!(matches!(reports[2], IngestReport::NewTicket { .. }));
    assert_eq!(left(&dir), "");
}

#[test]
fn the_marker_names_the_mail_in_hand_and_those_over_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let (a, b, c) = (sha256_hex(b"a"), sha256_hex(b"b"), sha256_hex(b"c"));
    let mut inflight = Inflight::open(&db).unwrap();
    // Over the budget before any mail was named: the line still reads.
    inflight.over_budget(&a).unwrap();
    inflight.enter(&b).unwrap();
    inflight.over_budget(&c).unwrap();
    let marker = Marker::parse(&left(&dir));
    assert_eq!(marker.current, Some((b.clone(), 0)));
    assert_eq!(marker.over_budget, vec![a, c]);
    assert_eq!(
        Marker::parse(&String::from_utf8_lossy(&marker.render())),
        marker
    );
    assert_eq!(
        Marker::parse("garbage\n\0\0 1\nabc over-budget\n"),
        Marker::default()
    );
    inflight.clear().unwrap();
    assert_eq!(left(&dir), "");
}

#[test]
fn a_death_before_any_mail_was_named_reads_as_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    // Killed while the first mail of the batch was being prepared:
    // nothing named yet.
    std::mem::forget(Inflight::open(&db).unwrap());
    let inflight = Inflight::open(&db).unwrap();
    assert!(inflight.after_crash());
    drop(inflight);
    assert!(!Inflight::open(&db).unwrap().after_crash());
}
