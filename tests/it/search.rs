//! Search (issue 13 §3): `postdesk tickets search` as scripts and people
//! use it (ranked, marked, escaped, JSON with the terms; FTS5 syntax in
//! the input never an error), and the search box on `/agent`, behind the
//! agent key, with the matching words marked and mail markup inert.

use std::process::Output;

use axum::http::{StatusCode, header};

use crate::page::{
    AGENT_KEY, BODY_PAYLOAD, PageFixture, SUBJECT_PAYLOAD, assert_no_live_markup, assert_secure,
    get,
};
use crate::support::{run_cli, temp_dir};

fn postdesk(dir: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_cli(&dir.join("search.db"), &[], args, stdin)
}

fn ingest(dir: &std::path::Path, n: usize, from: &str, subject: &str, body: &str) {
    let mail = format!(
        "From: {from}\r\nTo: tickets@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <search-{n}@customer.test>\r\n\r\n{body}\r\n"
    );
    let out = postdesk(dir, &["ingest", "-"], Some(mail.as_bytes()));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tickets_search_ranks_marks_and_escapes() {
    let dir = temp_dir();
    let dir = dir.path();
    ingest(
        dir,
        1,
        "ann@customer.test",
        "Account question",
        "By the way the toner is low. \u{1b}[2JOtherwise all is well with the account.",
    );
    ingest(
        dir,
        2,
        "bob@customer.test",
        "Toner empty",
        "No toner left, please send toner.",
    );
    ingest(dir, 3, "cy@customer.test", "Hello", "Nothing to see.");

    let out = postdesk(dir, &["tickets", "search", "toner", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["terms"], serde_json::json!(["toner"]));
    let hits = answer["hits"].as_array().unwrap();
    let numbers: Vec<i64> = hits.iter().map(|h| h["number"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [2, 1], "the better match first");
    assert_eq!(hits[0]["subject"], "Toner empty");
    assert_eq!(hits[0]["status"], "new");
    let snippet = hits[1]["snippet"].as_str().unwrap();
    assert!(snippet.contains("the toner is low"), "{snippet}");
    assert!(snippet.contains('\u{1b}'), "JSON stays exact: {snippet:?}");
    assert_eq!(hits[1]["matches"], serde_json::json!(["toner"]));
    let (start, end) = (
        hits[1]["highlights"][0][0].as_u64().unwrap() as usize,
        hits[1]["highlights"][0][1].as_u64().unwrap() as usize,
    );
    let marked: String = snippet.chars().skip(start).take(end - start).collect();
    assert_eq!(marked, "toner");

    // For people: brackets off a terminal, mail's controls escaped.
    let out = postdesk(dir, &["tickets", "search", "toner", "well"], None);
    let text = stdout(&out);
    assert!(text.starts_with("#1\tnew\tAccount question\n"), "{text}");
    assert!(
        text.contains("[toner]") && text.contains("[well]"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}') && text.contains("\\x1b[2J"),
        "{text}"
    );

    // A phrase must be in order.
    let out = postdesk(dir, &["tickets", "search", "\"send toner\""], None);
    assert!(stdout(&out).starts_with("#2\t"), "{out:?}");
    let out = postdesk(dir, &["tickets", "search", "\"toner send\""], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ticket matches"));
}

#[test]
fn fts_syntax_is_searched_as_text_or_refused_clearly() {
    let dir = temp_dir();
    let dir = dir.path();
    ingest(
        dir,
        1,
        "ann@customer.test",
        "Broken",
        "Rock AND roll OR NOT: it is broken near rock bottom.",
    );
    for nothing in ["\"", "-", "( )", "*"] {
        let out = postdesk(dir, &["tickets", "search", nothing], None);
        assert_eq!(out.status.code(), Some(2), "{nothing:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no words to search for"), "{err}");
        assert!(!err.contains("fts5") && !err.contains("syntax"), "{err}");
    }
    for text in [
        "AND",
        "OR",
        "NOT",
        "roll:",
        "NEAR(rock",
        "\"rock AND",
        "broke*",
        "^rock",
    ] {
        let out = postdesk(dir, &["tickets", "search", text, "--json"], None);
        assert_eq!(out.status.code(), Some(0), "{text:?}: {out:?}");
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(answer["hits"][0]["number"], 1, "{text:?} is a word here");
    }
}

fn queue_query(q: &str) -> String {
    let mut uri = String::from("/agent?q=");
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

#[tokio::test]
async fn the_agent_search_box_marks_words_safely_behind_the_key() {
    let mut fx = PageFixture::new(Some(AGENT_KEY));
    let ann = fx.open_ticket(
        "Ann <ann@customer.test>",
        SUBJECT_PAYLOAD,
        &format!("{BODY_PAYLOAD}\nThe smoke alarm <mark>rings</mark> too."),
        &[],
    );
    let bob = fx.open_ticket("Bob <bob@customer.test>", "Smoke test", "All fine.", &[]);
    fx.agent_mail(
        ann.number,
        "#note\nInternal: the landlord owes us a gizmo.",
        &[],
    );
    let router = fx.router();
    let bearer = format!("Bearer {AGENT_KEY}");
    let agent = [(header::AUTHORIZATION, bearer.as_str())];

    // Without the key, a search is the closed route's 404.
    let closed = get(&router, &queue_query("smoke"), &[]).await;
    assert_eq!(closed.status, StatusCode::NOT_FOUND);
    assert!(!closed.body.contains("Smoke"));

    let page = get(&router, &queue_query("smoke"), &agent).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_secure(&page);
    assert_no_live_markup(&page.body);
    assert!(
        page.body
            .contains(&format!("href=\"/agent/t/{}\"", ann.number))
    );
    assert!(
        page.body
            .contains(&format!("href=\"/agent/t/{}\"", bob.number))
    );
    assert!(page.body.contains("<mark>smoke</mark>"), "{}", page.body);
    assert!(
        page.body.contains("value=\"smoke\""),
        "the box keeps the query"
    );
    // The mail's own <mark> is text, not a mark.
    let page = get(&router, &queue_query("rings"), &agent).await;
    assert!(
        page.body
            .contains("&#60;mark&#62;<mark>rings</mark>&#60;/mark&#62;"),
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("<mark>").count(), 1, "{}", page.body);

    // Internal notes are found, and said to be notes.
    let page = get(&router, &queue_query("gizmo"), &agent).await;
    assert!(page.body.contains("<mark>gizmo</mark>"), "{}", page.body);
    assert!(page.body.contains("Internal note"));
    assert!(!page.body.contains(&format!("/agent/t/{}\"", bob.number)));

    // Nothing to search for, or nothing found: said on the page.
    let page = get(&router, &queue_query("\" - \""), &agent).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("no words to search for"),
        "{}",
        page.body
    );
    let page = get(&router, &queue_query("<script>nowhere"), &agent).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No ticket matches"), "{}", page.body);
    assert_no_live_markup(&page.body);

    // The queue itself has the box, and the key's sign-in is unchanged.
    let queue = get(&router, "/agent", &agent).await;
    assert!(queue.body.contains("role=\"search\""), "{}", queue.body);
    let signed = get(&router, &format!("/agent?key={AGENT_KEY}&q=smoke"), &[]).await;
    assert_eq!(signed.status, StatusCode::OK);
    assert!(
        signed
            .header(header::SET_COOKIE)
            .contains("postdesk_agent=")
    );
}
