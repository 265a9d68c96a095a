//! `postdesk migrate-db`: a SQLite desk made with `postdesk ingest` (an
//! attachment, a follow-up, an ignored auto-reply, a quarantined oversize
//! mail, outbox rows sent, failed and left mid-send) copied into a fresh
//! PostgreSQL database. Every table's rows and every raw mail's bytes
//! arrive with their ids, the links in the mail the desk sent still open
//! the customer's pages, the next ticket takes the next number, and a
//! second copy into the same database is refused. Runs only when
//! `POSTDESK_TEST_POSTGRES` names a cluster.

use std::path::Path;
use std::process::{Command, Output};

use postdesk::store::TicketFilter;

use crate::support::{base64_lines, binary, connect_store, temp_dir, test_database};

/// The tables migrate-db copies, as the test counts them on each side.
const TABLES: &[&str] = &[
    "installation",
    "raw_mails",
    "tickets",
    "participants",
    "access_tokens",
    "messages",
    "blobs",
    "attachments",
    "outbox",
    "recent_automatic_mails",
    "imap_checkpoints",
    "quarantine",
    "erasures",
    "smtp_auth_routes",
    "message_search",
];

/// `postdesk ARGS` on the SQLite desk at `desk`, with `env` added.
fn on_sqlite(desk: &Path, env: &[(&str, &str)], args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(binary())
        .args(args)
        .env("POSTDESK__DATABASE__PATH", desk)
        .env("POSTDESK__DATABASE__URL", "")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("postdesk starts");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default())
        .expect("stdin is written");
    drop(pipe);
    child.wait_with_output().expect("postdesk finishes")
}

fn ingest(desk: &Path, env: &[(&str, &str)], mail: &str) -> String {
    let out = on_sqlite(desk, env, &["ingest", "-"], Some(mail.as_bytes()));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// The ATTACHMENT's bytes, as a PDF the customer attached.
const ATTACHMENT: &[u8] = b"%PDF-1.4 not really a PDF \x00\x01\x02\xff but bytes all the same";

/// Fills the desk: tickets #1 (with an attachment and a follow-up), #2
/// and #3, an ignored auto-reply and a quarantined oversize mail.
fn fill(desk: &Path) {
    let attached = format!(
        "From: Ann <ann@customer.test>\r\nTo: tickets@example.com\r\nSubject: Printer broken\r\n\
         Message-ID: <mdb-1@customer.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\n\
         Content-Type: text/plain\r\n\r\nThe printer says zebracorn.\r\n--b1\r\n\
         Content-Type: application/pdf; name=scan.pdf\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=scan.pdf\r\n\r\n{}\r\n--b1--\r\n",
        base64_lines(ATTACHMENT)
    );
    assert!(ingest(desk, &[], &attached).contains("new ticket #1"));
    let plain = |from: &str, id: &str, subject: &str, extra: &str| {
        format!(
            "From: {from}\r\nTo: tickets@example.com\r\nSubject: {subject}\r\n\
             Message-ID: <{id}@customer.test>\r\n{extra}\r\nAbout {subject}.\r\n"
        )
    };
    let follow_up = plain(
        "ann@customer.test",
        "mdb-2",
        "Re: [Ticket #1] Printer broken",
        "",
    );
    assert!(ingest(desk, &[], &follow_up).contains("#1"));
    let bob = plain("bob@customer.test", "mdb-3", "Invoice wrong", "");
    assert!(ingest(desk, &[], &bob).contains("new ticket #2"));
    let away = plain(
        "cid@customer.test",
        "mdb-4",
        "Out of office",
        "Auto-Submitted: auto-replied\r\n",
    );
    ingest(desk, &[], &away);
    let big = format!(
        "{}{}\r\n",
        plain("dan@customer.test", "mdb-5", "Huge", ""),
        "x".repeat(4000)
    );
    ingest(
        desk,
        &[("POSTDESK__LIMITS__MAX_MESSAGE_BYTES", "2048")],
        &big,
    );
    let carol = plain("carol@customer.test", "mdb-6", "Login fails", "");
    assert!(ingest(desk, &[], &carol).contains("new ticket #3"));
}

/// Gives the outbox rows, in id order, the states a desk's outbox is in:
/// sent, failed, mid-send with the server's 250 in the sent journal, and
/// mid-send without; and one message a NUL character (old SQLite rows can
/// hold one; PostgreSQL text cannot). Returns the two mid-send Message-IDs.
fn age_outbox(desk: &Path) -> (String, String) {
    let db = rusqlite::Connection::open(desk).unwrap();
    let ids: Vec<(i64, String)> = db
        .prepare("SELECT id, message_id FROM outbox ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(ids.len() >= 4, "four mails to send: {ids:?}");
    let set = |id: i64, sql: &str| db.execute(sql, [id]).unwrap();
    set(
        ids[0].0,
        "UPDATE outbox SET status = 'sent', attempts = 1, sent_at = created_at WHERE id = ?1",
    );
    set(
        ids[1].0,
        "UPDATE outbox SET status = 'failed', attempts = 5, last_error = '550 no such user' WHERE id = ?1",
    );
    set(
        ids[2].0,
        "UPDATE outbox SET status = 'sending' WHERE id = ?1",
    );
    set(
        ids[3].0,
        "UPDATE outbox SET status = 'sending' WHERE id = ?1",
    );
    let journal = format!("{}\n", ids[2].1);
    std::fs::write(desk.with_extension("db.sent"), journal).unwrap();
    let nul = db.execute(
        "UPDATE messages SET text = text || char(0) WHERE message_id LIKE '%mdb-3@customer.test%'",
        [],
    );
    assert_eq!(nul.unwrap(), 1);
    (ids[2].1.clone(), ids[3].1.clone())
}

/// The ticket link and the requester link in ticket #1's confirmation.
fn links(desk: &Path) -> (String, String) {
    let db = rusqlite::Connection::open(desk).unwrap();
    let raw: Vec<u8> = db
        .query_row(
            "SELECT raw FROM outbox WHERE ticket_number = 1 AND kind = 'confirmation'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let text = postdesk::ingest::parse::parse(&raw).unwrap().text;
    let after = |marker: &str| {
        let start = text.find(marker).expect("a link") + marker.len();
        text[start..]
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
    };
    (after("/t/"), after("/r/"))
}

#[test]
fn a_sqlite_desk_moves_to_postgresql_whole_and_its_links_keep_working() {
    if std::env::var("POSTDESK_TEST_POSTGRES").map_or(true, |u| u.trim().is_empty()) {
        eprintln!("skipped: migrate-db needs PostgreSQL (POSTDESK_TEST_POSTGRES unset)");
        return;
    }
    let dir = temp_dir();
    let desk = dir.path().join("desk.db");
    fill(&desk);
    let (journalled, interrupted) = age_outbox(&desk);
    let (ticket_link, requester_link) = links(&desk);
    let target = test_database(&dir.path().join("target.db"));
    let url = target.url.clone().expect("a PostgreSQL database");

    let out = on_sqlite(&desk, &[], &["migrate-db", "--to", &url], None);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("DIFFERS") && said.contains("committed"),
        "{said}"
    );
    assert!(
        said.contains("1 recorded as sent") && said.contains("1 queued again"),
        "{said}"
    );
    assert!(said.contains("1 text values held a NUL"), "{said}");

    // Every table's rows, counted here on each side.
    let source = rusqlite::Connection::open(&desk).unwrap();
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        let rows: i64 = source.query_row(&sql, [], |r| r.get(0)).unwrap();
        assert_eq!(target.scalar_i64(&sql, &[]), rows, "{table}");
        assert!(
            rows > 0
                || ["imap_checkpoints", "erasures", "smtp_auth_routes", "blobs"].contains(table),
            "{table} is exercised"
        );
    }
    // Every raw mail byte for byte, under its id.
    let mails: Vec<(i64, Vec<u8>)> = source
        .prepare("SELECT id, bytes FROM raw_mails ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let copied = target.rows("SELECT id, bytes FROM raw_mails ORDER BY id", &[]);
    assert_eq!(copied.len(), mails.len());
    for ((id, bytes), row) in mails.iter().zip(&copied) {
        assert_eq!((row[0].int(), row[1].bytes()), (*id, bytes.clone()));
    }
    let kinds = target.rows_text("SELECT kind FROM quarantine ORDER BY kind", &[]);
    assert_eq!(
        kinds,
        vec![vec!["fault".to_string()], vec!["ignored".to_string()]]
    );
    // Mail left mid-send is settled as a start would settle it.
    let status =
        |id: &str| target.scalar_text("SELECT status FROM outbox WHERE message_id = $1", &[&id]);
    assert_eq!(status(&journalled), "sent");
    assert_eq!(status(&interrupted), "pending");
    let failed = target.scalar_i64("SELECT count(*) FROM outbox WHERE status = 'failed'", &[]);
    assert_eq!(failed, 1);

    // The links the desk mailed open the pages on PostgreSQL.
    let store = connect_store(&target.settings());
    let page = store
        .ticket_page(&ticket_link)
        .unwrap()
        .expect("the ticket link opens");
    assert_eq!(page.summary.subject, "Printer broken");
    let attachment = page
        .messages
        .iter()
        .flat_map(|m| &m.attachments)
        .next()
        .expect("the attachment is listed");
    let attachment = attachment.id;
    let list = store
        .requester_page(&requester_link, TicketFilter::All, 1)
        .unwrap()
        .expect("the requester link opens");
    assert_eq!(list.requester, "ann@customer.test");
    assert_eq!(list.list.rows.len(), 1);
    drop(store);

    // The next ticket takes the next number, on PostgreSQL.
    let next = Command::new(binary())
        .args(["ingest", "-"])
        .envs(target.process_env())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let mail = "From: eve@customer.test\r\nTo: tickets@example.com\r\nSubject: New\r\n\
                        Message-ID: <mdb-7@customer.test>\r\n\r\nHello.\r\n";
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(mail.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        String::from_utf8_lossy(&next.stdout).contains("new ticket #4"),
        "{next:?}"
    );

    // A second copy into a database that holds a desk is refused.
    let again = on_sqlite(&desk, &[], &["migrate-db", "--to", &url], None);
    assert_ne!(again.status.code(), Some(0));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("not empty") && err.contains("tickets: 4"),
        "{err}"
    );
    assert_eq!(target.scalar_i64("SELECT count(*) FROM tickets", &[]), 4);

    // The attachment, served from the copied raw mail by its offset.
    let store = connect_store(&target.settings());
    let file = store.ticket_attachment(&ticket_link, attachment);
    assert_eq!(file.unwrap().expect("served").bytes, ATTACHMENT);
}
