//! Hostile mail through the whole store path (issue 17, findings 3 and 4):
//! each attack of the issue, generated here (no megabyte fixtures), is
//! ingested into a fresh database with two agents, and the harm is
//! asserted absent: the mail is stored, what we send is small, the page
//! keeps the whole text. Time is not asserted here: `examples/bench_hostile`
//! measures it (`scripts/bench hostile`).

use std::fmt::Write as _;

use chrono::Utc;

use postdesk::domain::TicketNumber;
use postdesk::ingest::Pipeline;
use postdesk::settings::Settings;
use postdesk::store::{IngestReport, MailSource, Store};

/// The store is dropped before its directory (and database) go.
struct Desk {
    store: Store,
    pipeline: Pipeline,
    dir: crate::support::TestDir,
}

fn fresh() -> Desk {
    let env = [
        ("SUPPORT__ADDRESS", "tickets@support.test"),
        ("SUPPORT__AGENTS", "alice@support.test,bob@support.test"),
        ("LIMITS__MAX_MESSAGE_BYTES", "31457280"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string()))
    .collect();
    let settings = Settings::load_with_env(None, env).unwrap();
    let dir = crate::support::temp_dir();
    let store = crate::support::open_store(&dir.path().join("t.db"));
    let pipeline = Pipeline::new(&settings, "hostile-test-secret");
    Desk {
        store,
        pipeline,
        dir,
    }
}

impl Desk {
    fn ingest(&self, raw: &[u8]) -> IngestReport {
        self.store
            .ingest_mail(&self.pipeline, raw, &MailSource::Pipe, Utc::now())
            .unwrap()
    }

    /// Size of the largest mail queued, and every queued mail's raw text.
    fn outbox(&self) -> Vec<String> {
        let db = crate::support::test_database(&self.dir.path().join("t.db"));
        let rows = db.rows("SELECT raw FROM outbox", &[]);
        rows.iter().map(|r| r[0].text()).collect()
    }
}

fn mail(subject: &str, extra_headers: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Mallory <mallory@customer.test>\r\nTo: tickets@support.test\r\n{extra_headers}\
         Subject: {subject}\r\nMessage-ID: <hostile@customer.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n{body}"
    )
    .into_bytes()
}

#[test]
fn hostile_many_lines_make_small_notifications_and_a_whole_page() {
    let desk = fresh();
    let mut body = String::new();
    for i in 0..200_000 {
        let _ = write!(body, "line {i}\r\n");
    }
    let report = desk.ingest(&mail("lines", "", "text/plain", &body));
    assert!(
        matches!(report, IngestReport::NewTicket { .. }),
        "{report:?}"
    );
    let out = desk.outbox();
    assert_eq!(out.len(), 3, "a confirmation and two notifications");
    for raw in &out {
        assert!(
            raw.len() < 16 * 1024,
            "a mail of {} bytes was queued",
            raw.len()
        );
    }
    assert!(
        out.iter()
            .any(|m| m.contains("the full text is on the page"))
    );
    let detail = desk.store.ticket_detail(TicketNumber(1)).unwrap().unwrap();
    let first = &detail.messages[0];
    assert!(first.text.contains("line 199999"), "the page lost the end");
}

#[test]
fn hostile_references_are_not_copied_whole() {
    let desk = fresh();
    let mut refs = String::from("References:");
    for i in 0..200_000 {
        let _ = write!(refs, "\r\n <ref{i}@elsewhere.test>");
    }
    refs.push_str("\r\n");
    let report = desk.ingest(&mail("refs", &refs, "text/plain", "Hello.\r\n"));
    assert!(
        matches!(report, IngestReport::NewTicket { .. }),
        "{report:?}"
    );
    for raw in desk.outbox() {
        assert!(
            raw.len() < 8 * 1024,
            "a mail of {} bytes was queued",
            raw.len()
        );
        assert!(raw.contains("<ref0@elsewhere.test>"));
        assert!(raw.contains("<ref199999@elsewhere.test>"));
        assert!(!raw.contains("<ref100000@elsewhere.test>"));
    }
}

#[test]
fn hostile_subject_of_prefixes_is_cleaned() {
    let desk = fresh();
    let subject = format!("{}help", "Re: ".repeat(250_000));
    let report = desk.ingest(&mail(&subject, "", "text/plain", "Please.\r\n"));
    assert!(
        matches!(report, IngestReport::NewTicket { .. }),
        "{report:?}"
    );
    // The ticket keeps the subject as written; what we send carries it
    // cleaned, once tagged, and short.
    let outbox = desk.outbox();
    assert!(!outbox.is_empty());
    for raw in outbox {
        let subject = raw
            .lines()
            .find(|l| l.starts_with("Subject: "))
            .expect("a Subject header");
        assert!(subject.ends_with("[Ticket #1] help"), "{:.200}", subject);
    }
}

#[test]
fn hostile_large_html_and_many_parts_are_read_as_text() {
    let desk = fresh();
    let mut html = String::from("<html><body>");
    while html.len() < 2_000_000 {
        html.push_str("<p>Paragraph of a long letter.</p>\r\n");
    }
    html.push_str("<p>THE END</p></body></html>\r\n");
    let report = desk.ingest(&mail("html", "", "text/html; charset=utf-8", &html));
    assert!(
        matches!(report, IngestReport::NewTicket { .. }),
        "{report:?}"
    );
    let detail = desk.store.ticket_detail(TicketNumber(1)).unwrap().unwrap();
    assert!(detail.messages[0].text.contains("THE END"));
    assert!(!detail.messages[0].text.contains("<p>"));

    let desk = fresh();
    let mut parts = String::new();
    for i in 0..20_000 {
        let _ = write!(
            parts,
            "--b\r\nContent-Type: text/html\r\n\r\n<p>part {i}</p>\r\n"
        );
    }
    parts.push_str("--b--\r\n");
    let raw = mail("parts", "", "multipart/mixed; boundary=\"b\"", &parts);
    let report = desk.ingest(&raw);
    assert!(
        matches!(report, IngestReport::NewTicket { .. }),
        "{report:?}"
    );
    let detail = desk.store.ticket_detail(TicketNumber(1)).unwrap().unwrap();
    let text = &detail.messages[0].text;
    assert!(text.contains("part 0"), "{}", &text[..text.len().min(200)]);
    assert!(!text.contains("part 19999"), "every part was joined");
}
