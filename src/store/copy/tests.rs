//! Unit tests of `copy`'s pure parts: value conversion, the checksum's
//! framing, the source checks. The copy itself is tested against a real
//! PostgreSQL in tests/it/migrate_db.rs.

use std::borrow::Cow;

use postgres::types::Type;
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

use super::rows::{RawChecksum, convert};
use super::source::{hold_exclusive, open_source};
use super::*;

#[test]
fn values_go_into_the_target_columns_type() {
    let mut repaired = 0;
    let int = convert(ValueRef::Integer(7), &Type::INT8, &mut repaired).unwrap();
    assert!(matches!(int, Value::Int(7)));
    let bytes = convert(ValueRef::Blob(b"\x00\xff"), &Type::BYTEA, &mut repaired).unwrap();
    assert!(matches!(bytes, Value::Blob(b) if b.as_ref() == b"\x00\xff"));
    // SQLite is untyped: text stored in a BLOB column is still its bytes.
    let text_blob = convert(ValueRef::Text(b"abc"), &Type::BYTEA, &mut repaired).unwrap();
    assert!(matches!(text_blob, Value::Blob(b) if b.as_ref() == b"abc"));
    let null = convert(ValueRef::Null, &Type::TEXT, &mut repaired).unwrap();
    assert!(matches!(null, Value::Null));
    assert_eq!(repaired, 0);
    let err = convert(ValueRef::Integer(1), &Type::BYTEA, &mut repaired).unwrap_err();
    assert!(err.to_string().contains("bytea"), "{err}");
    assert!(convert(ValueRef::Real(1.5), &Type::INT8, &mut repaired).is_err());
}

#[test]
fn text_postgresql_cannot_store_is_repaired_and_counted() {
    let mut repaired = 0;
    let nul = convert(ValueRef::Text(b"a\0b"), &Type::TEXT, &mut repaired).unwrap();
    assert!(
        matches!(&nul, Value::Text(t) if t == "a\u{FFFD}b"),
        "{nul:?}"
    );
    let invalid = convert(ValueRef::Text(b"caf\xe9"), &Type::TEXT, &mut repaired).unwrap();
    assert!(
        matches!(&invalid, Value::Text(t) if t == "caf\u{FFFD}"),
        "{invalid:?}"
    );
    assert_eq!(repaired, 2);
    let fine = convert(
        ValueRef::Text("grüße".as_bytes()),
        &Type::TEXT,
        &mut repaired,
    )
    .unwrap();
    assert!(matches!(fine, Value::Text(Cow::Borrowed("grüße"))));
    assert_eq!(repaired, 2, "valid text is borrowed as it is");
}

#[test]
fn the_checksum_sees_a_changed_moved_or_missing_mail() {
    let sum = |mails: &[(i64, &[u8])]| {
        let mut c = RawChecksum::default();
        for (id, bytes) in mails {
            c.add(*id, &Sha256::digest(bytes));
        }
        c.hex()
    };
    let base = sum(&[(1, b"one"), (2, b"two")]);
    assert_eq!(base, sum(&[(1, b"one"), (2, b"two")]));
    assert_ne!(base, sum(&[(1, b"one"), (2, b"twO")]), "changed bytes");
    assert_ne!(base, sum(&[(1, b"one"), (3, b"two")]), "another id");
    assert_ne!(base, sum(&[(1, b"one")]), "a mail missing");
    assert_ne!(
        base,
        sum(&[(1, b"onetwo"), (2, b"")]),
        "bytes moved across mails"
    );
}

#[test]
fn a_report_matches_only_when_everything_agrees() {
    let report = CopyReport {
        tables: vec![TableCount {
            table: "tickets".into(),
            source: 3,
            target: 3,
        }],
        search_complete: true,
        source_checksum: "ab".into(),
        target_checksum: "ab".into(),
        settled_sent: 0,
        settled_requeued: 0,
        repaired_texts: 0,
        committed: false,
        seconds: 0.0,
    };
    assert!(report.matches());
    let mut short = report.clone();
    short.tables[0].target = 2;
    assert!(!short.matches());
    let mut sum = report.clone();
    sum.target_checksum = "cd".into();
    assert!(!sum.matches());
    let mut search = report;
    search.search_complete = false;
    assert!(!search.matches());
}

#[test]
fn the_source_must_be_a_current_desk_with_known_tables_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desk.db");
    drop(Store::open_file(&path).unwrap());
    open_source(&path).expect("a fresh desk is at this schema version");

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE stray (x INTEGER)")
        .unwrap();
    let err = open_source(&path).unwrap_err().to_string();
    assert!(err.contains("stray"), "{err}");
    conn.execute_batch(
        "DROP TABLE stray; DELETE FROM refinery_schema_history
          WHERE version = (SELECT max(version) FROM refinery_schema_history)",
    )
    .unwrap();
    let err = open_source(&path).unwrap_err().to_string();
    assert!(err.contains("postdesk migrate"), "{err}");
}

#[test]
fn a_desk_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("desk.db");
    let store = Store::open_file(&path).unwrap();
    let err = copy_to_postgres(&path, "postgres://u:p@127.0.0.1:1/db", "").unwrap_err();
    assert!(
        err.to_string().contains("in use by a running postdesk"),
        "{err}"
    );
    drop(store);
    assert!(
        hold_exclusive(&path).unwrap().is_some(),
        "free once it stops"
    );
    let missing = copy_to_postgres(&dir.path().join("none.db"), "postgres://u:p@h/db", "");
    assert!(missing.unwrap_err().to_string().contains("does not exist"));
}
