//! Tests of search (`search.rs`): the query language, snippets, and the
//! index the triggers keep (insert, note, erase).

use chrono::Utc;

use super::*;
use crate::domain::Status;
use crate::ingest::Pipeline;
use crate::settings::Settings;
use crate::store::{IngestReport, MailSource};

fn desk() -> (tempfile::TempDir, Store, Pipeline) {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "POSTDESK__SUPPORT__ADDRESS".to_string(),
        "tickets@support.test".to_string(),
    )];
    let settings = Settings::load_with_env(None, env).unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let pipeline = Pipeline::new(&settings, "unit-secret-unit-secret");
    (dir, store, pipeline)
}

/// A new ticket from `from`; returns its number.
fn open(store: &Store, pipeline: &Pipeline, from: &str, subject: &str, body: &str) -> i64 {
    let raw = format!(
        "From: {from}\r\nTo: tickets@support.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@customer.test>\r\n\r\n{body}\r\n",
        crate::tokens::random_token().unwrap()
    );
    match store
        .ingest_mail(pipeline, raw.as_bytes(), &MailSource::Pipe, Utc::now())
        .unwrap()
    {
        IngestReport::NewTicket { number, .. } => number.0,
        other => panic!("not a new ticket: {other:?}"),
    }
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
    let (_dir, store, pipeline) = desk();
    open(
        &store,
        &pipeline,
        "ann@customer.test",
        "Printer",
        "It is AND broken.",
    );
    for query in [
        "AND",
        "OR",
        "NOT x",
        "NEAR(a b)",
        "x:y",
        "\"a\"\"b\"",
        "'",
        "\\",
        "a*b",
        "**a",
        "{subject}: x",
        "a OR",
        "%",
        "é",
        "回复",
        "\u{2}x\u{3}",
    ] {
        let Ok(q) = SearchQuery::parse(query) else {
            continue;
        };
        store
            .search_tickets(&q, 5)
            .unwrap_or_else(|e| panic!("{query:?}: {e:#}"));
    }
    assert_eq!(
        numbers(&search(&store, "and")).len(),
        1,
        "a stop word is a word"
    );
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
    let (_dir, store, pipeline) = desk();
    let weak = open(
        &store,
        &pipeline,
        "ann@customer.test",
        "Question about my account",
        "Also, the toner light blinks sometimes. Otherwise the account works, the login \
         works, the invoices arrive, and the rest of the office is happy with it.",
    );
    let strong = open(
        &store,
        &pipeline,
        "bob@customer.test",
        "Toner empty",
        "The toner is empty: please send toner.",
    );
    let other = open(&store, &pipeline, "cy@customer.test", "Hello", "Nothing.");
    let hits = search(&store, "toner");
    assert_eq!(numbers(&hits), [strong, weak]);
    assert!(!numbers(&hits).contains(&other));
    assert_eq!(
        hits[0].snippet.matches(),
        ["toner"],
        "the body says it most"
    );
    // Words anywhere in the ticket, subject or text, all required.
    assert_eq!(numbers(&search(&store, "login toner")), [weak]);
    assert_eq!(numbers(&search(&store, "\"light blinks\"")), [weak]);
    assert!(search(&store, "\"blinks light\"").is_empty());
    assert_eq!(numbers(&search(&store, "invoice")), [weak], "stemmed");
    assert_eq!(numbers(&search(&store, "offi*")), [weak]);
    let hit = &search(&store, "blinks")[0];
    assert!(hit.snippet.text().contains("toner light blinks"), "{hit:?}");
    assert_eq!(hit.snippet.matches(), ["blinks"]);
    assert_eq!(hit.kind, "customer");
}

#[test]
fn notes_are_searchable_and_our_own_mails_are_not() {
    let (_dir, store, pipeline) = desk();
    let n = open(
        &store,
        &pipeline,
        "ann@customer.test",
        "Broken",
        "It broke.",
    );
    store
        .set_status(
            &pipeline,
            TicketNumber(n),
            Status::Pending,
            Some("Called the vendor, quokka firmware needed."),
            Utc::now(),
        )
        .unwrap();
    let hits = search(&store, "quokka");
    assert_eq!(numbers(&hits), [n]);
    assert_eq!(hits[0].kind, "note");
    // The confirmation we sent says "received" on every ticket.
    let text: String = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT group_concat(text, ' ') FROM messages WHERE direction = 'out'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    let word = text
        .split_whitespace()
        .find(|w| w.len() > 6 && w.chars().all(char::is_alphabetic))
        .unwrap()
        .to_string();
    assert!(
        !search(&store, &word).iter().any(|h| h.kind != "customer"),
        "{word}"
    );
}

#[test]
fn forged_marks_in_mail_text_are_no_marks() {
    let (_dir, store, pipeline) = desk();
    open(
        &store,
        &pipeline,
        "ann@customer.test",
        "Marks",
        "plain \u{2}fake\u{3} words around walrus",
    );
    let hit = &search(&store, "walrus")[0];
    assert_eq!(hit.snippet.matches(), ["walrus"], "{:?}", hit.snippet);
}

#[test]
fn an_erased_ticket_leaves_the_index_and_the_file() {
    let (dir, store, pipeline) = desk();
    let gone = open(
        &store,
        &pipeline,
        "ann@customer.test",
        "Secret quokkafeather",
        "my password hint is zebrapelican",
    );
    let kept = open(
        &store,
        &pipeline,
        "bob@customer.test",
        "Kept",
        "zebrapelican too",
    );
    assert_eq!(numbers(&search(&store, "zebrapelican")), [kept, gone]);
    let on_disk = |word: &str| {
        ["t.db", "t.db-wal"].iter().any(|f| {
            let bytes = std::fs::read(dir.path().join(f)).unwrap_or_default();
            bytes.windows(word.len()).any(|w| w == word.as_bytes())
        })
    };
    assert!(on_disk("quokkafeath"), "the test can see text on disk");
    store
        .erase_address("ann@customer.test", false, Utc::now())
        .unwrap();
    assert_eq!(numbers(&search(&store, "zebrapelican")), [kept]);
    assert!(search(&store, "quokkafeather").is_empty());
    assert!(!on_disk("quokkafeath"), "no copy, no index term left");
    assert!(!on_disk("ann@customer"));
}

#[test]
fn a_ticket_with_many_matches_does_not_hide_the_next_one() {
    let (_dir, store, pipeline) = desk();
    let busy = open(
        &store,
        &pipeline,
        "ann@customer.test",
        "Walrus",
        "walrus walrus",
    );
    for _ in 0..40 {
        store
            .set_status(
                &pipeline,
                TicketNumber(busy),
                Status::Open,
                Some("walrus walrus walrus"),
                Utc::now(),
            )
            .unwrap();
    }
    let quiet = open(
        &store,
        &pipeline,
        "bob@customer.test",
        "Zoo",
        "We saw a walrus and many other animals at the zoo on Sunday afternoon.",
    );
    let q = SearchQuery::parse("walrus").unwrap();
    let hits = store.search_tickets(&q, 2).unwrap();
    assert_eq!(numbers(&hits), [busy, quiet], "past the first window of 16");
    assert_eq!(numbers(&store.search_tickets(&q, 1).unwrap()), [busy]);
}
