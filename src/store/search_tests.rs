//! Tests of search (`search.rs`, `search_pg.rs`): the query language,
//! snippets, and the index the triggers keep (insert, note, erase). The
//! store tests run on SQLite, or on PostgreSQL when
//! `POSTDESK_TEST_POSTGRES` holds an admin URL of a private cluster (each
//! test makes a fresh database there and drops it).

use chrono::Utc;

use super::*;
use crate::domain::Status;
use crate::ingest::Pipeline;
use crate::settings::{DatabaseSettings, Secret, Settings};
use crate::store::{IngestReport, MailSource};

/// A store and its pipeline on one backend.
struct Desk {
    store: Store,
    pipeline: Pipeline,
    /// Dropped after the store: its connections close first.
    _pg: Option<PgDatabase>,
    dir: tempfile::TempDir,
}

/// A fresh database on the cluster `POSTDESK_TEST_POSTGRES` names,
/// dropped (forcibly) with this value.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(admin: &str) -> PgDatabase {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).unwrap();
        let name = format!("pd_{}", hex::encode(random));
        let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let (base, query) = admin.split_at(admin.find('?').unwrap_or(admin.len()));
        let (server, _) = base.rsplit_once('/').unwrap();
        let url = format!("{server}/{name}{query}");
        PgDatabase {
            admin: admin.to_string(),
            name,
            url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let done = postgres::Client::connect(&self.admin, postgres::NoTls)
            .and_then(|mut client| client.batch_execute(&drop));
        if let Err(err) = done {
            eprintln!("could not drop the test database {}: {err}", self.name);
        }
    }
}

/// The desk of this run's backend: PostgreSQL when a cluster is given
/// (a database of our own, dropped after; in tests `Store::open` would
/// give PostgreSQL too and never drop it), else SQLite. `scripts/test`
/// runs the unit tests once on each.
fn desks() -> Vec<Desk> {
    let admin = std::env::var("POSTDESK_TEST_POSTGRES").unwrap_or_default();
    if admin.trim().is_empty() {
        eprintln!("PostgreSQL skipped: POSTDESK_TEST_POSTGRES is unset");
        return vec![desk(None)];
    }
    vec![desk(Some(PgDatabase::create(admin.trim())))]
}

fn desk(pg: Option<PgDatabase>) -> Desk {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "POSTDESK__SUPPORT__ADDRESS".to_string(),
        "tickets@support.test".to_string(),
    )];
    let settings = Settings::load_with_env(None, env).unwrap();
    let database = DatabaseSettings {
        path: dir.path().join("t.db"),
        url: Secret::new(pg.as_ref().map_or("", |p| p.url.as_str())),
        ca_file: String::new(),
    };
    let store = Store::connect(&database).unwrap();
    let pipeline = Pipeline::new(&settings, "unit-secret-unit-secret");
    Desk {
        store,
        pipeline,
        _pg: pg,
        dir,
    }
}

/// A new ticket from `from`; returns its number.
fn open(d: &Desk, from: &str, subject: &str, body: &str) -> i64 {
    let raw = format!(
        "From: {from}\r\nTo: tickets@support.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@customer.test>\r\n\r\n{body}\r\n",
        crate::tokens::random_token().unwrap()
    );
    let now = Utc::now();
    match d
        .store
        .ingest_mail(&d.pipeline, raw.as_bytes(), &MailSource::Pipe, now)
    {
        Ok(IngestReport::NewTicket { number, .. }) => number.0,
        other => panic!("not a new ticket: {other:?}"),
    }
}

/// An internal note on ticket `n`.
fn note(d: &Desk, n: i64, text: &str) {
    let number = TicketNumber(n);
    d.store
        .set_status(&d.pipeline, number, Status::Open, Some(text), Utc::now())
        .unwrap();
}

fn search(store: &Store, query: &str) -> Vec<SearchHit> {
    store
        .search_tickets(&SearchQuery::parse(query).unwrap(), 20)
        .unwrap()
}

fn numbers(hits: &[SearchHit]) -> Vec<i64> {
    hits.iter().map(|h| h.number.0).collect()
}

#[test]
fn words_phrases_and_prefixes_become_fts_strings() {
    let q = SearchQuery::parse(r#"printer "blank pages" driv* e-mail"#).unwrap();
    assert_eq!(
        q.fts_expression(),
        r#""printer" "blank pages" "driv" * "e-mail""#
    );
    assert_eq!(q.terms(), ["printer", "blank pages", "driv*", "e-mail"]);
    // An unclosed quote runs to the end; inner quotes cannot escape.
    let q = SearchQuery::parse(r#"invoice "late fee"#).unwrap();
    assert_eq!(q.fts_expression(), r#""invoice" "late fee""#);
}

#[test]
fn fts_syntax_in_the_input_is_text_or_a_clear_error() {
    for nothing in ["", "   ", "\"", "\"\"", "-", "*", "( ) : ^ -- \" \""] {
        assert_eq!(
            SearchQuery::parse(nothing),
            Err(QueryError::NoWords),
            "{nothing:?}"
        );
    }
    let q = SearchQuery::parse("AND OR NOT NEAR(a b) -x col:y ^z").unwrap();
    assert_eq!(
        q.fts_expression(),
        r#""AND" "OR" "NOT" "NEAR(a" "b)" "-x" "col:y" "^z""#
    );
    assert_eq!(
        SearchQuery::parse(&"a".repeat(501)),
        Err(QueryError::TooLong)
    );
    assert_eq!(
        SearchQuery::parse(&"a ".repeat(17)),
        Err(QueryError::TooManyTerms)
    );
}

#[test]
fn hostile_queries_run_without_an_sql_error() {
    for d in desks() {
        open(&d, "ann@customer.test", "Printer", "It is AND broken.");
        // FTS5's syntax, then tsquery's and its quoting; `¦` separates.
        let hostile = "AND¦OR¦NOT x¦NEAR(a b)¦x:y¦\"a\"\"b\"¦'¦\\¦a*b¦**a¦{subject}: x¦a OR¦%¦é¦回复¦\
            \u{2}x\u{3}¦a & b¦!x¦x:*¦x:A¦x <-> y¦<2>¦a|b¦(¦'x'¦\\'¦it's*¦'\\¦\"'\" & !\"¦$1¦?1";
        for query in hostile.split('¦') {
            let Ok(q) = SearchQuery::parse(query) else {
                continue;
            };
            let backend = d.store.backend();
            d.store
                .search_tickets(&q, 5)
                .unwrap_or_else(|e| panic!("{backend:?} {query:?}: {e:#}"));
        }
        assert_eq!(
            numbers(&search(&d.store, "and")).len(),
            1,
            "a stop word is a word"
        );
        assert_eq!(numbers(&search(&d.store, "and*")).len(), 1);
    }
}

#[test]
fn snippets_split_at_the_marks_only() {
    let s = Snippet::from_marked("…the \u{2}printer\u{3} on\n\nfloor <b>\u{2}2\u{3}…");
    assert_eq!(s.text(), "…the printer on floor <b>2…");
    assert_eq!(s.matches(), ["printer", "2"]);
    assert_eq!(s.highlights(), [(5, 12), (25, 26)]);
    assert_eq!(
        s.parts.iter().filter(|p| p.marked).count(),
        2,
        "{:?}",
        s.parts
    );
}

#[test]
fn a_body_word_finds_its_ticket_and_the_better_match_ranks_first() {
    for d in desks() {
        let store = &d.store;
        let weak = open(
            &d,
            "ann@customer.test",
            "Question about my account",
            "Also, the toner light blinks sometimes. Otherwise the account works, the login \
             works, the invoices arrive, and the rest of the office is happy with it.",
        );
        let strong = open(
            &d,
            "bob@customer.test",
            "Toner empty",
            "The toner is empty: please send toner.",
        );
        let other = open(&d, "cy@customer.test", "Hello", "Nothing.");
        let hits = search(store, "toner");
        assert_eq!(numbers(&hits), [strong, weak]);
        assert!(!numbers(&hits).contains(&other));
        assert_eq!(
            hits[0].snippet.matches(),
            ["toner"],
            "the body says it most"
        );
        assert!(hits[0].score < hits[1].score, "lower is better");
        // Words anywhere in the ticket, subject or text, all required.
        assert_eq!(numbers(&search(store, "login toner")), [weak]);
        assert_eq!(
            numbers(&search(store, "LOGIN Toner")),
            [weak],
            "case folded"
        );
        assert_eq!(numbers(&search(store, "\"light blinks\"")), [weak]);
        assert!(search(store, "\"blinks light\"").is_empty());
        match store.backend() {
            Backend::Sqlite => assert_eq!(numbers(&search(store, "invoice")), [weak], "stemmed"),
            // 'simple' does not stem: the prefix is the way there.
            Backend::Postgres => {
                assert!(search(store, "invoice").is_empty());
                assert_eq!(numbers(&search(store, "invoice*")), [weak]);
            }
        }
        assert_eq!(numbers(&search(store, "offi*")), [weak]);
        let hit = &search(store, "blinks")[0];
        assert!(hit.snippet.text().contains("toner light blinks"), "{hit:?}");
        assert_eq!(hit.snippet.matches(), ["blinks"]);
        assert_eq!(hit.kind, "customer");
    }
}

#[test]
fn a_match_in_the_subject_only_snippets_the_subject() {
    for d in desks() {
        let n = open(
            &d,
            "ann@customer.test",
            "Quokka stuck",
            "It will not move at all.",
        );
        let hit = &search(&d.store, "quokka")[0];
        assert_eq!(hit.number.0, n);
        assert_eq!(
            hit.snippet.text(),
            "Quokka stuck",
            "{:?}",
            d.store.backend()
        );
        assert_eq!(hit.snippet.matches(), ["Quokka"]);
        // One word in each: a tie, which goes to the subject (FTS5's first column).
        let hit = &search(&d.store, "quokka move*")[0];
        assert_eq!(hit.snippet.matches(), ["Quokka"], "{hit:?}");
        // Two words in the body beat one in the subject.
        let hit = &search(&d.store, "quokka move* all")[0];
        assert_eq!(hit.snippet.matches(), ["move", "all"], "{hit:?}");
    }
}

#[test]
fn a_cut_snippet_says_so_and_a_whole_one_does_not() {
    let long = format!(
        "{} the walrus sleeps {}",
        "one two three four five six seven eight nine ten eleven twelve".repeat(3),
        "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".repeat(3)
    );
    for d in desks() {
        open(&d, "ann@customer.test", "Zoo", &long);
        open(&d, "bob@customer.test", "Aquarium", "A narwhal, alone.");
        let text = search(&d.store, "walrus")[0].snippet.text();
        assert!(text.starts_with('…') && text.ends_with('…'), "{text:?}");
        assert!(text.contains("walrus sleeps"), "{text:?}");
        let text = search(&d.store, "narwhal")[0].snippet.text();
        assert_eq!(text, "A narwhal, alone.", "{:?}", d.store.backend());
    }
}

#[test]
fn equal_matches_rank_the_newer_ticket_first() {
    for d in desks() {
        let older = open(&d, "ann@customer.test", "Gizmo", "The gizmo hums.");
        let newer = open(&d, "bob@customer.test", "Gizmo", "The gizmo hums.");
        let hits = search(&d.store, "gizmo");
        assert_eq!(numbers(&hits), [newer, older]);
        assert_eq!(hits[0].score, hits[1].score);
    }
}

#[test]
fn notes_are_searchable_and_our_own_mails_are_not() {
    for d in desks() {
        let n = open(&d, "ann@customer.test", "Broken", "It broke.");
        let note = Some("Called the vendor, quokka firmware needed.");
        d.store
            .set_status(
                &d.pipeline,
                TicketNumber(n),
                Status::Pending,
                note,
                Utc::now(),
            )
            .unwrap();
        let hits = search(&d.store, "quokka");
        assert_eq!(numbers(&hits), [n]);
        assert_eq!(hits[0].kind, "note");
        // The confirmation we sent says "received" on every ticket.
        let sql = match d.store.backend() {
            Backend::Sqlite => {
                "SELECT group_concat(text, ' ') FROM messages WHERE direction = 'out'"
            }
            Backend::Postgres => {
                "SELECT string_agg(text, ' ') FROM messages WHERE direction = 'out'"
            }
        };
        let text: String = d
            .store
            .read(|c| c.query_row(sql, [], |r| r.get(0)))
            .unwrap();
        let word = text
            .split_whitespace()
            .find(|w| w.len() > 6 && w.chars().all(char::is_alphabetic))
            .unwrap()
            .to_string();
        assert!(
            !search(&d.store, &word).iter().any(|h| h.kind != "customer"),
            "{word}"
        );
    }
}

#[test]
fn forged_marks_in_mail_text_are_no_marks_and_markup_stays_text() {
    for d in desks() {
        let body = "plain \u{2}fake\u{3} words <mark>around</mark> walrus <b>x</b> <!-- y -->";
        open(&d, "ann@customer.test", "Marks", body);
        let hit = &search(&d.store, "walrus")[0];
        assert_eq!(hit.snippet.matches(), ["walrus"], "{:?}", hit.snippet);
        // PostgreSQL's headline would drop what looks like a tag.
        let text = hit.snippet.text();
        assert!(
            text.ends_with("<mark>around</mark> walrus <b>x</b> <!-- y -->"),
            "{text:?}"
        );
    }
}

#[test]
fn an_erased_ticket_leaves_the_index_and_the_file() {
    for d in desks() {
        let store = &d.store;
        let gone = open(
            &d,
            "ann@customer.test",
            "Secret quokkafeather",
            "my password hint is zebrapelican",
        );
        let kept = open(&d, "bob@customer.test", "Kept", "zebrapelican too");
        assert_eq!(numbers(&search(store, "zebrapelican")), [kept, gone]);
        let sqlite = store.backend() == Backend::Sqlite;
        let on_disk = |word: &str| {
            ["t.db", "t.db-wal"].iter().any(|f| {
                let bytes = std::fs::read(d.dir.path().join(f)).unwrap_or_default();
                bytes.windows(word.len()).any(|w| w == word.as_bytes())
            })
        };
        assert!(
            !sqlite || on_disk("quokkafeath"),
            "the test can see text on disk"
        );
        store
            .erase_address("ann@customer.test", false, Utc::now())
            .unwrap();
        assert_eq!(numbers(&search(store, "zebrapelican")), [kept]);
        assert!(search(store, "quokkafeather").is_empty());
        let indexed: i64 = store
            .read(|c| {
                let sql = "SELECT COUNT(*) FROM message_search WHERE ticket_number = ?1";
                c.query_row(sql, [gone], |r| r.get(0))
            })
            .unwrap();
        assert_eq!(indexed, 0, "no row of the erased ticket in the index");
        // PostgreSQL's files keep dead rows until VACUUM: not this test's.
        assert!(
            !sqlite || !on_disk("quokkafeath"),
            "no copy, no index term left"
        );
        assert!(!sqlite || !on_disk("ann@customer"));
    }
}

#[test]
fn a_ticket_with_many_matches_does_not_hide_the_next_one() {
    for d in desks() {
        let busy = open(&d, "ann@customer.test", "Walrus", "walrus walrus");
        for _ in 0..40 {
            note(&d, busy, "walrus walrus walrus");
        }
        let quiet = open(
            &d,
            "bob@customer.test",
            "Zoo",
            "We saw a walrus and many other animals at the zoo on Sunday afternoon.",
        );
        let q = SearchQuery::parse("walrus").unwrap();
        let hits = d.store.search_tickets(&q, 2).unwrap();
        assert_eq!(numbers(&hits), [busy, quiet], "past the first window of 16");
        assert_eq!(numbers(&d.store.search_tickets(&q, 1).unwrap()), [busy]);
    }
}

/// Messages waiting in SQLite's search backlog (V14).
fn waiting_in_backlog(d: &Desk) -> i64 {
    d.store
        .read(|c| {
            c.query_row("SELECT count(*) FROM search_backlog", params![], |r| {
                r.get(0)
            })
        })
        .unwrap()
}

/// A customer's mail as IMAP hands it over, about `word`.
fn fetched(uid: u32, from: &str, word: &str) -> crate::imap::FetchedMail {
    let text = format!(
        "From: {from}\r\nTo: tickets@support.test\r\nSubject: {word}\r\n\
         Message-ID: <{word}{uid}@customer.test>\r\n\r\nAbout the {word}.\r\n"
    );
    crate::imap::FetchedMail::whole(uid, text.into_bytes())
}

/// A message written in a savepoint that rolls back, beside one that
/// stays, in one write transaction: what the batch commits is found, what
/// rolled back is not, and (on SQLite, V14) nothing waits in the backlog.
fn write_two_notes_one_rolled_back(d: &Desk, n: i64) {
    let conn = d.store.write().unwrap();
    let tx = conn.begin().unwrap();
    let insert = |text: &str, id: &str| {
        tx.execute(
            "INSERT INTO messages (ticket_number, message_id, direction, kind, from_address,
               subject, date, text, thread_reason, created_at)
             VALUES (?1, ?2, 'in', 'note', 'test', '', ?3, ?4, 'test', ?3)",
            params![n, id, Utc::now(), text],
        )
        .unwrap();
    };
    {
        let _dropped = tx.savepoint().unwrap();
        insert("the walrus rolled back", "walrus@test");
    }
    let kept = tx.savepoint().unwrap();
    insert("the narwhal stays", "narwhal@test");
    kept.commit().unwrap();
    tx.commit().unwrap();
}

#[test]
fn what_a_transaction_commits_is_searchable_and_what_rolled_back_is_not() {
    for d in desks() {
        let batch: Vec<crate::imap::FetchedMail> = (1..=3u32)
            .map(|uid| fetched(uid, &format!("ann{uid}@customer.test"), "lantern"))
            .collect();
        d.store
            .ingest_batch(&d.pipeline, "INBOX", 1, batch, Utc::now())
            .unwrap();
        let found = numbers(&search(&d.store, "lantern"));
        assert_eq!(
            found.len(),
            3,
            "every mail of the batch is found: {found:?}"
        );

        write_two_notes_one_rolled_back(&d, found[0]);
        assert_eq!(numbers(&search(&d.store, "narwhal")), vec![found[0]]);
        assert!(
            search(&d.store, "walrus").is_empty(),
            "rolled back, yet found"
        );
        if d.store.backend() == Backend::Sqlite {
            assert_eq!(
                waiting_in_backlog(&d),
                0,
                "the backlog is indexed before each commit"
            );
        }
    }
}

#[test]
fn a_message_the_index_refuses_is_stored_and_the_rest_of_its_batch_is_found() {
    let d = desk(None);
    if d.store.backend() != Backend::Sqlite {
        eprintln!("skipped: SQLite's FTS5 backlog (PostgreSQL indexes in each row's trigger)");
        return;
    }
    open(&d, "ann@customer.test", "kettle", "The kettle whistles.");
    let next: i64 = d
        .store
        .read(|c| c.query_row("SELECT max(id) + 1 FROM messages", params![], |r| r.get(0)))
        .unwrap();
    // A stale index row where the next message goes: the index refuses it,
    // as it would any row it cannot take.
    {
        let conn = d.store.write().unwrap();
        let tx = conn.begin().unwrap();
        tx.execute(
            "INSERT INTO message_search (rowid, subject, body, ticket_number)
             VALUES (?1, 'stale', 'stale', 0)",
            params![next],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let reports = d
        .store
        .ingest_batch(
            &d.pipeline,
            "INBOX",
            1,
            vec![
                fetched(1, "bo1@customer.test", "walnut"),
                fetched(2, "bo2@customer.test", "hazel"),
            ],
            Utc::now(),
        )
        .expect("the index's refusal does not hold the batch back");
    assert!(
        reports
            .iter()
            .all(|r| matches!(r, IngestReport::NewTicket { .. })),
        "both mails are stored: {reports:?}"
    );
    assert_eq!(
        search(&d.store, "hazel").len(),
        1,
        "the rest of the batch is found"
    );
    assert!(
        search(&d.store, "walnut").is_empty(),
        "the refused one is left out"
    );
    assert_eq!(waiting_in_backlog(&d), 0);
}
