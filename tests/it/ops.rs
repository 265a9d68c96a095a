//! Operating the daemon's data (issue 14, section 2): a backup taken during
//! a 1,000-mail ingest restores every ticket committed before it began with
//! byte-identical raw mail; restore refuses a database in use, an existing
//! one without --force, and a damaged backup; `erase` leaves neither the
//! address nor the text of its mails in the database files, keeps other
//! customers' tickets, and `--dry-run` changes nothing. Backup and
//! restore are of SQLite's file and run on SQLite only; `erase` runs on
//! both backends (on PostgreSQL the trace is looked for in every row of
//! every table, and there is no sent journal beside the database).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::support::{run_cli, sqlite_only, temp_dir, test_database};
use chrono::Utc;
use postdesk::app;
use postdesk::imap::FetchedMail;
use postdesk::settings::Settings;

fn settings_for(db: &Path) -> Settings {
    Settings::load_with_env(None, test_database(db).process_env()).expect("test settings are valid")
}

fn mail(from: &str, id: &str, subject: &str, body: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: tickets@example.com\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n{extra}\r\n{body}\r\n"
    )
    .into_bytes()
}

fn ok(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &std::process::Output, why: &str) {
    assert_ne!(out.status.code(), Some(0), "refused: {why}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(why), "{err}");
}

/// Every raw mail of a database by its dedup key, and its ticket numbers
/// with their requesters.
fn contents(db: &Path) -> (BTreeMap<String, Vec<u8>>, BTreeMap<i64, String>) {
    let db = test_database(db);
    let raws = db.rows("SELECT dedup_key, bytes FROM raw_mails", &[]);
    let raws = raws.iter().map(|r| (r[0].text(), r[1].bytes())).collect();
    let tickets = db.rows("SELECT number, requester FROM tickets", &[]);
    let tickets = tickets.iter().map(|r| (r[0].int(), r[1].text())).collect();
    (raws, tickets)
}

#[test]
fn a_backup_during_a_1000_mail_ingest_restores_every_committed_ticket_byte_identical() {
    if sqlite_only("`backup` and `restore` copy the SQLite file") {
        return;
    }
    let dir = temp_dir();
    let db = dir.path().join("live.db");
    let (store, pipeline) = app::open_store(&settings_for(&db)).unwrap();
    let mails: Vec<Vec<u8>> = (0..1000)
        .map(|i| {
            mail(
                &format!("Customer {i} <c{i}@customers.test>"),
                &format!("ops-{i}@customers.test"),
                &format!("Question {i}"),
                &format!("Body of mail {i}, with some bytes \u{e9}\u{fc}."),
                "Content-Type: text/plain; charset=utf-8\r\n",
            )
        })
        .collect();
    let ingest = {
        let (store, pipeline, mails) = (Arc::clone(&store), Arc::clone(&pipeline), mails.clone());
        std::thread::spawn(move || {
            for (n, chunk) in mails.chunks(5).enumerate() {
                let batch: Vec<FetchedMail> = chunk
                    .iter()
                    .enumerate()
                    .map(|(k, raw)| FetchedMail::whole((n * 5 + k + 1) as u32, raw.clone()))
                    .collect();
                store
                    .ingest_batch(&pipeline, "INBOX", 1, batch, Utc::now())
                    .expect("the batch is stored");
            }
        })
    };
    let watch = test_database(&db);
    let count = || watch.scalar_i64("SELECT count(*) FROM tickets", &[]);
    while count() < 100 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (before, tickets_before) = contents(&db);
    assert!(
        before.len() < 1000,
        "the backup must start while the ingest runs ({} stored)",
        before.len()
    );
    let file = dir.path().join("backup.db");
    let shown = ok(&run_cli(
        &db,
        &[],
        &["backup", file.to_str().unwrap()],
        None,
    ));
    assert!(shown.contains("integrity check: ok"), "{shown}");
    ingest.join().expect("the ingest thread ran");
    assert_eq!(count(), 1000, "the ingest went on beside the backup");
    let again = run_cli(&db, &[], &["backup", file.to_str().unwrap()], None);
    refused(&again, "already exists");

    let fresh = temp_dir();
    let restored = fresh.path().join("restored.db");
    let shown = ok(&run_cli(
        &restored,
        &[],
        &["restore", file.to_str().unwrap()],
        None,
    ));
    assert!(shown.contains("integrity check: ok"), "{shown}");
    assert!(fresh.path().join("restored.db.sent").exists());
    let (after, tickets_after) = contents(&restored);
    for (key, bytes) in &before {
        assert_eq!(after.get(key), Some(bytes), "raw mail {key} is restored");
        let n: usize = key
            .trim_start_matches("ops-")
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(bytes, &mails[n], "byte-identical to the mail sent");
    }
    for (number, requester) in &tickets_before {
        assert_eq!(
            tickets_after.get(number),
            Some(requester),
            "ticket #{number}"
        );
    }
    // The restored database opens and answers as a postdesk database.
    let (store, _) = app::open_store(&settings_for(&restored)).unwrap();
    assert!(store.list_tickets(None).unwrap().len() >= tickets_before.len());
}

#[test]
fn restore_refuses_a_database_in_use_an_existing_one_and_a_damaged_backup() {
    if sqlite_only("`restore` replaces the SQLite file") {
        return;
    }
    let dir = temp_dir();
    let db = dir.path().join("p.db");
    let (store, pipeline) = app::open_store(&settings_for(&db)).unwrap();
    let one = mail(
        "Ann <ann@customer.test>",
        "r1@customer.test",
        "One",
        "one",
        "",
    );
    store
        .ingest_mail(
            &pipeline,
            one,
            &postdesk::store::MailSource::Pipe,
            Utc::now(),
        )
        .unwrap();
    let file = dir.path().join("b.db");
    ok(&run_cli(
        &db,
        &[],
        &["backup", file.to_str().unwrap()],
        None,
    ));
    let restore = |force: bool, from: &Path| {
        let mut args = vec!["restore", from.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        run_cli(&db, &[], &args, None)
    };
    // The store stands for a running daemon: it holds the database.
    refused(&restore(true, &file), "in use");
    let two = mail(
        "Bob <bob@customer.test>",
        "r2@customer.test",
        "Two",
        "two",
        "",
    );
    store
        .ingest_mail(
            &pipeline,
            two,
            &postdesk::store::MailSource::Pipe,
            Utc::now(),
        )
        .expect("the refused restore changed nothing under the daemon");
    drop((store, pipeline));

    refused(&restore(false, &file), "--force");
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024]).unwrap();
    refused(&restore(true, &garbage), "garbage.db");
    assert_eq!(contents(&db).1.len(), 2, "a damaged backup changes nothing");

    ok(&restore(true, &file));
    let (_, tickets) = contents(&db);
    assert_eq!(tickets.len(), 1, "back to the state of the backup");
}

/// The database file and its WAL, lower-cased. On PostgreSQL every row
/// of every table as text (bytes as hex), lower-cased.
fn files_lowercase(db: &Path) -> Vec<u8> {
    let live = test_database(db);
    if live.is_postgres() {
        let tables = live.rows_text(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            &[],
        );
        let mut text = String::new();
        for table in tables {
            let sql = format!("SELECT CAST(t AS TEXT) FROM {} t", table[0]);
            for row in live.rows_text(&sql, &[]) {
                text.push_str(&row[0]);
                text.push('\n');
            }
        }
        return text.to_ascii_lowercase().into_bytes();
    }
    let mut bytes = std::fs::read(db).unwrap();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        bytes.extend(wal);
    }
    bytes.to_ascii_lowercase()
}

/// `needle` is in `haystack` as text, or (PostgreSQL's rows as text show
/// bytes so) as lower-case hex.
fn contains_any_form(haystack: &[u8], needle: &str) -> bool {
    contains(haystack, needle) || contains(haystack, &hex::encode(needle))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn table_counts(db: &Path) -> Vec<i64> {
    let db = test_database(db);
    [
        "tickets",
        "messages",
        "raw_mails",
        "attachments",
        "blobs",
        "access_tokens",
        "outbox",
        "participants",
        "quarantine",
        "erasures",
    ]
    .iter()
    .map(|t| db.scalar_i64(&format!("SELECT count(*) FROM {t}"), &[]))
    .collect()
}

#[test]
fn erase_leaves_no_trace_of_the_address_and_keeps_other_customers() {
    let dir = temp_dir();
    let db = dir.path().join("p.db");
    let ingest = |raw: Vec<u8>| ok(&run_cli(&db, &[], &["ingest", "-"], Some(&raw)));
    let attachment = "Content-Type: multipart/mixed; boundary=\"b\"\r\nMIME-Version: 1.0\r\n";
    let body = "--b\r\nContent-Type: text/plain\r\n\r\nQuartz-Zebra-7781 my order.\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"id.txt\"\r\n\r\n\
Passport Quartz-Zebra-7781-scan\r\n--b--";
    ingest(mail(
        "Ann Erased <Ann.Erased@Customer.test>",
        "e1@customer.test",
        "Order",
        body,
        attachment,
    ));
    ingest(mail(
        "ann.erased@customer.test",
        "e2@customer.test",
        "Second",
        "Quartz-Zebra-7781 again",
        "",
    ));
    ingest(mail(
        "Bob Kept <bob@kept.test>",
        "k1@kept.test",
        "Bob's problem",
        "bob-keeps-this text",
        "",
    ));
    // Ann writes on Bob's ticket too (answering his mail): her own mail.
    ingest(mail(
        "ann.erased@customer.test",
        "e3@customer.test",
        "Re: Bob's problem",
        "Quartz-Zebra-7781 me too",
        "In-Reply-To: <k1@kept.test>\r\n",
    ));
    let sqlite = !test_database(&db).is_postgres();
    let confirmations: Vec<(String, String)> = test_database(&db)
        .rows_text(
            "SELECT message_id, CAST(recipients AS TEXT) FROM outbox",
            &[],
        )
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let journal: String = confirmations
        .iter()
        .map(|(id, _)| format!("{id}\n"))
        .collect();
    // The sent journal is SQLite's; PostgreSQL records it in its commit.
    if sqlite {
        std::fs::write(db.with_extension("db.sent"), &journal).unwrap();
    }
    let bob_sent = confirmations
        .iter()
        .filter(|(_, to)| to.contains("bob@kept.test"))
        .count();

    let counts = table_counts(&db);
    let dry = ok(&run_cli(
        &db,
        &[],
        &["erase", "--dry-run", "ANN.erased@customer.test"],
        None,
    ));
    assert!(
        dry.contains("Would erase") && dry.contains("2 tickets"),
        "{dry}"
    );
    assert_eq!(table_counts(&db), counts, "--dry-run changes nothing");
    if sqlite {
        assert_eq!(
            std::fs::read_to_string(db.with_extension("db.sent")).unwrap(),
            journal
        );
    }

    let done = ok(&run_cli(
        &db,
        &[],
        &["erase", "ann.erased@customer.test"],
        None,
    ));
    assert!(
        done.contains("Erased") && done.contains("2 tickets"),
        "{done}"
    );
    assert!(done.contains("1 attachments"), "{done}");
    let files = files_lowercase(&db);
    assert!(
        !contains_any_form(&files, "ann.erased@customer.test"),
        "address left"
    );
    assert!(
        !contains_any_form(&files, "quartz-zebra-7781"),
        "mail text left"
    );
    assert!(
        contains_any_form(&files, "bob-keeps-this"),
        "the search itself works"
    );

    let show = ok(&run_cli(
        &db,
        &[],
        &["tickets", "show", "3", "--json"],
        None,
    ));
    let bob: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(bob["requester"], "bob@kept.test");
    let texts: Vec<&str> = bob["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("bob-keeps-this")),
        "{texts:?}"
    );
    let list = ok(&run_cli(&db, &[], &["tickets", "list", "--json"], None));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "only Bob's ticket is left"
    );

    if sqlite {
        let left = std::fs::read_to_string(db.with_extension("db.sent")).unwrap();
        assert_eq!(
            left.lines().count(),
            bob_sent,
            "only Bob's journal lines stay"
        );
    }
    let audit = test_database(&db).rows_text(
        "SELECT address_sha256, CAST(counts AS TEXT) FROM erasures",
        &[],
    );
    assert_eq!(audit.len(), 1, "one erasure is audited");
    // JSON as PostgreSQL prints it has a space after each colon.
    let (hash, counts) = (audit[0][0].clone(), audit[0][1].replace(' ', ""));
    use sha2::Digest;
    let expected = hex::encode(sha2::Sha256::digest(b"ann.erased@customer.test"));
    assert_eq!(hash, expected, "the audit keeps the address's hash only");
    assert!(counts.contains("\"tickets\":2"), "{counts}");
}
