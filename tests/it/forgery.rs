//! Forged agents (issue 17, finding 1 and the agent-token item): a
//! stranger who writes `Authentication-Results` into their own mail, or who
//! holds an old notification token, gets nothing done. Each attack is fed
//! through `postdesk ingest` as an MTA would, beside the genuine mail that
//! does work, so that a broken fixture cannot pass for a fixed bug.

use chrono::{Duration, Utc};
use postdesk::domain::TicketNumber;
use postdesk::tokens::{IssueDay, Purpose, Signer};
use serde_json::Value;

use crate::support::{run_cli, temp_dir};

const SECRET: &str = "forgery-test-secret-0123456789";
const AGENT: &str = "alice@support.test";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("POSTDESK__SUPPORT__ADDRESS", "tickets@support.test"),
        ("POSTDESK__SUPPORT__AGENTS", AGENT),
        ("POSTDESK__SUPPORT__SECRET", SECRET),
        ("POSTDESK__SUPPORT__TRUSTED_AUTHSERV_ID", "mx.support.test"),
    ]
}

fn ingest(db: &std::path::Path, raw: &str) {
    let out = run_cli(db, &env(), &["ingest", "-"], Some(raw.as_bytes()));
    assert_eq!(
        out.status.code(),
        Some(0),
        "ingest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn show(db: &std::path::Path, number: i64) -> Value {
    let n = number.to_string();
    let out = run_cli(db, &env(), &["tickets", "show", &n, "--json"], None);
    assert_eq!(out.status.code(), Some(0));
    serde_json::from_slice(&out.stdout).expect("tickets show --json is JSON")
}

/// A ticket opened by a customer; returns the database.
fn desk_with_one_ticket(dir: &std::path::Path) -> std::path::PathBuf {
    let db = dir.join("forgery.db");
    ingest(
        &db,
        "From: Ann <ann@customer.test>\r\nTo: tickets@support.test\r\n\
         Subject: My invoice\r\nMessage-ID: <ann-1@customer.test>\r\n\r\nWhere is it?\r\n",
    );
    assert_eq!(show(&db, 1)["status"], "new");
    db
}

/// An agent's `#resolve` with a phishing line, `headers` on top.
fn agent_mail(id: &str, headers: &str) -> String {
    format!(
        "{headers}From: Alice <{AGENT}>\r\nTo: tickets@support.test\r\n\
         Subject: Re: [Ticket #1] My invoice\r\nMessage-ID: <{id}@support.test>\r\n\r\n\
         #resolve\r\n\r\nPHISH: re-enter your card at http://evil.test/pay\r\n"
    )
}

/// Whether the phishing line went out to the customer (the agents'
/// notification about a customer's mail quotes it to the agents, which is
/// right: they see what the stranger wrote).
fn relayed_phish(ticket: &Value) -> bool {
    ticket["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .any(|m| {
            m["direction"] == "out"
                && m["kind"] != "notification"
                && m["text"].as_str().unwrap_or("").contains("PHISH")
        })
}

#[test]
fn a_forged_authentication_results_below_the_servers_own_makes_nobody_an_agent() {
    let dir = temp_dir();
    let db = desk_with_one_ticket(dir.path());
    // The receiving server said fail, on top; the stranger wrote a pass
    // into the mail itself, below the server's Received.
    let forged = agent_mail(
        "forged",
        "Authentication-Results: mx.support.test; dkim=fail header.d=support.test\r\n\
         Received: from evil.test (evil.test [198.51.100.7]) by mx.support.test with ESMTP\r\n\
         Authentication-Results: mx.support.test; dkim=pass header.d=support.test\r\n",
    );
    ingest(&db, &forged);
    let ticket = show(&db, 1);
    assert_eq!(ticket["status"], "new", "no command ran, nothing reopened");
    assert!(!relayed_phish(&ticket), "nothing relayed to the customer");
    let stored = ticket["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == "forged@support.test")
        .expect("the forged mail is kept");
    assert_eq!(stored["kind"], "note", "kept as an internal note");
    assert!(notice_to_agent(&ticket).is_some(), "the agent is told");

    // Sent straight to an MX that wrote no results of its own: the
    // stranger's header right below the server's Received counts neither.
    let forged = agent_mail(
        "forged-2",
        "Received: from evil.test (evil.test [198.51.100.7]) by mx.support.test with ESMTP\r\n\
         Authentication-Results: mx.support.test; dkim=pass header.d=support.test\r\n",
    );
    ingest(&db, &forged);
    let ticket = show(&db, 1);
    assert_eq!(ticket["status"], "new");
    assert!(!relayed_phish(&ticket));

    // The same mail with only the server's own verdict (pass) works: the
    // fixture is an agent's mail in every other respect.
    let genuine = agent_mail(
        "genuine",
        "Authentication-Results: mx.support.test; dkim=pass header.d=support.test\r\n\
         Received: from mail.support.test by mx.support.test with ESMTPS\r\n",
    );
    ingest(&db, &genuine);
    let ticket = show(&db, 1);
    assert_eq!(ticket["status"], "resolved");
    assert!(
        relayed_phish(&ticket),
        "the genuine agent's text is relayed"
    );
}

#[test]
fn an_agent_token_works_for_its_ticket_for_agent_token_days_then_no_more() {
    let dir = temp_dir();
    let db = desk_with_one_ticket(dir.path());
    let signer = Signer::new(SECRET);
    let token_from = |days_ago: i64| {
        let day = IssueDay::of(Utc::now() - Duration::days(days_ago));
        let token = signer
            .token_on(TicketNumber(1), Purpose::Notification, Some(AGENT), day)
            .unwrap();
        format!("In-Reply-To: <pd.{token}@support.test>\r\n")
    };
    ingest(&db, &agent_mail("old-token", &token_from(40)));
    let ticket = show(&db, 1);
    assert_eq!(ticket["status"], "new", "a 40-day-old token runs nothing");
    assert!(!relayed_phish(&ticket));

    // The agent's answer carries a fresh token: replying to it works.
    let notice = notice_to_agent(&ticket).expect("the agent is told");
    let answer = format!("In-Reply-To: <{notice}>\r\n");
    ingest(&db, &agent_mail("answer-to-notice", &answer));
    let ticket = show(&db, 1);
    assert_eq!(
        ticket["status"], "resolved",
        "a reply to the fresh notice works"
    );

    let dir = temp_dir();
    let db = desk_with_one_ticket(dir.path());
    ingest(&db, &agent_mail("fresh-token", &token_from(2)));
    let ticket = show(&db, 1);
    assert_eq!(ticket["status"], "resolved", "a 2-day-old token works");
}

/// The Message-ID of our answer to an agent whose mail was not proven.
fn notice_to_agent(ticket: &Value) -> Option<String> {
    ticket["messages"].as_array()?.iter().find_map(|m| {
        let text = m["text"].as_str()?;
        let ours = m["direction"] == "out" && text.contains("not authenticated as yours");
        ours.then(|| m["message_id"].as_str().map(str::to_string))
            .flatten()
    })
}
