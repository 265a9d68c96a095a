//! The seam itself, on whichever backend the suite runs against.

use std::path::PathBuf;

use super::*;

#[test]
fn the_test_database_replaces_only_the_database_name_of_the_admin_url() {
    let admin = "postgres://pd:pw@127.0.0.1:5433/postgres?sslmode=disable";
    let url = with_database(admin, "pd_00ff");
    assert_eq!(
        url,
        "postgres://pd:pw@127.0.0.1:5433/pd_00ff?sslmode=disable"
    );
    assert_eq!(database_name(&url), Some("pd_00ff"));
    assert_eq!(
        with_database("postgres://pd@localhost", "pd_1"),
        "postgres://pd@localhost/pd_1"
    );
    assert_eq!(database_name("postgres://pd@h/postgres"), None);
}

/// Runs on either backend (no mail stack needed): parameters of each
/// kind reach columns of each width, results come back typed, a
/// missing table counts as 0, and the PostgreSQL database goes with
/// its directory.
#[test]
fn the_seam_queries_both_backends_alike_and_drops_its_postgres_database() {
    let dir = crate::support::temp_dir();
    let db = test_database(&dir.path().join("seam.db"));
    assert_eq!(db.is_postgres(), postgres_admin_url().is_some());
    assert_eq!(db.count_or_zero("SELECT count(*) FROM seam", &[]), 0);
    db.execute(
        "CREATE TABLE seam (id INTEGER PRIMARY KEY, n BIGINT NOT NULL, \
         small INTEGER, name TEXT, raw BYTEA)",
        &[],
    );
    let insert = "INSERT INTO seam (id, n, small, name, raw) VALUES ($1, $2, $3, $4, $5)";
    let big: i64 = 1 << 40;
    assert_eq!(
        db.execute(insert, &[&1i64, &big, &7i64, &"Ann", &vec![0u8, 255]]),
        1
    );
    assert_eq!(
        db.execute(insert, &[&2i64, &5i64, &8i32, &"Bob", &vec![1u8]]),
        1
    );
    let rows = db.rows(
        "SELECT n, small, name, raw FROM seam WHERE name = $1 AND id = $2",
        &[&"Ann", &1i64],
    );
    let want = vec![vec![
        Value::Int(big),
        Value::Int(7),
        Value::Text("Ann".into()),
        Value::Bytes(vec![0, 255]),
    ]];
    assert_eq!(rows, want);
    let sum = "SELECT CAST(SUM(n) AS BIGINT) FROM seam WHERE small >= $1";
    assert_eq!(db.scalar_i64(sum, &[&7i64]), big + 5);
    let names = db.rows_text("SELECT name, small FROM seam ORDER BY id", &[]);
    assert_eq!(names, [["Ann", "7"], ["Bob", "8"]]);
    assert!(db.try_rows("SELECT nothing FROM seam", &[]).is_err());
    let (Some(admin), Some(url)) = (postgres_admin_url(), db.url.clone()) else {
        return;
    };
    drop(dir);
    let name = database_name(&url)
        .expect("a test database name")
        .to_string();
    let cluster = TestDb {
        path: PathBuf::new(),
        url: Some(admin),
    };
    let left = "SELECT count(*) FROM pg_database WHERE datname = $1";
    assert_eq!(cluster.scalar_i64(left, &[&name]), 0, "{name} is dropped");
}
