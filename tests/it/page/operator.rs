//! What agents and operators get: the queue behind its key (Bearer or a
//! cookie from `?key=` once), `/healthz`, `/metrics`, the stylesheet, and
//! `postdesk tokens rotate N`.

use axum::http::{StatusCode, header};

use super::fixture::*;
use postdesk::store::{IngestReport, Kept};

#[tokio::test]
async fn the_agent_queue_is_a_404_without_its_key() {
    let mut closed = PageFixture::new(None);
    closed.open_ticket("ann@customer.test", "Hello", "Hi.", &[]);
    let router = closed.router();
    let bearer = format!("Bearer {AGENT_KEY}");
    for uri in ["/agent", "/agent/t/1", &format!("/agent?key={AGENT_KEY}")] {
        let page = get(&router, uri, &[(header::AUTHORIZATION, &bearer)]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{uri} with no key set");
    }

    let mut fx = PageFixture::new(Some(AGENT_KEY));
    let c = conversation(&mut fx);
    fx.agent_mail(c.bob.number, &format!("#assign {AGENT}"), &[]);
    let router = fx.router();
    let ticket_uri = format!("/agent/t/{}", c.ann.number);
    for (uri, auth) in [
        ("/agent", None),
        ("/agent", Some("Bearer wrong")),
        ("/agent?key=wrong", None),
        (ticket_uri.as_str(), None),
        (ticket_uri.as_str(), Some("Bearer wrong")),
    ] {
        let headers: Vec<(header::HeaderName, &str)> = auth
            .map(|a| (header::AUTHORIZATION, a))
            .into_iter()
            .collect();
        let page = get(&router, uri, &headers).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{uri} {auth:?}");
    }

    let queue = get(&router, "/agent", &[(header::AUTHORIZATION, &bearer)]).await;
    assert_eq!(queue.status, StatusCode::OK);
    assert_secure(&queue);
    assert_no_live_markup(&queue.body);
    assert!(
        queue.body.contains("Bob&#39;s private matter")
            || queue.body.contains("Bob's private matter")
    );
    assert!(queue.body.contains("ann@customer.test") && queue.body.contains("bob@customer.test"));
    assert!(queue.body.contains(AGENT), "the assignee");
    assert!(queue.body.contains("<span class=\"count\">(2)</span>"));

    // ?key= once: a cookie that is not the key, HttpOnly, SameSite=Strict.
    let signed = get(&router, &format!("/agent?key={AGENT_KEY}"), &[]).await;
    assert_eq!(signed.status, StatusCode::OK);
    let cookie = signed.header(header::SET_COOKIE).to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/agent"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains(AGENT_KEY));
    assert!(signed.body.contains("url=/agent"));
    let pair = cookie.split(';').next().expect("name=value").to_string();

    let full = get(&router, &ticket_uri, &[(header::COOKIE, &pair)]).await;
    assert_eq!(full.status, StatusCode::OK);
    assert_no_live_markup(&full.body);
    for shown in [
        "customer sounds upset",
        "Internal note",
        "out of the office",
        "Auto-reply",
        "we have received your request",
        AGENT,
    ] {
        assert!(full.body.contains(shown), "agents see {shown:?}");
    }
    let note_file = fx.attachment_id(c.ann.number, "internal.txt");
    let file = get(
        &router,
        &format!("{ticket_uri}/a/{note_file}"),
        &[(header::COOKIE, &pair)],
    )
    .await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.body, "internal only");
    let bad_cookie = get(
        &router,
        &ticket_uri,
        &[(header::COOKIE, "postdesk_agent=00")],
    )
    .await;
    assert_eq!(bad_cookie.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_metrics_and_the_stylesheet() {
    let mut fx = PageFixture::new(Some(AGENT_KEY));
    let router = fx.router();
    let health = get(&router, "/healthz", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.header(header::CONTENT_TYPE), "application/json");
    assert_eq!(
        health.body,
        r#"{"status":"ok","database":"ok","imap":{"connected":false,"last_fetch_seconds_ago":null},"outbox":{"pending":0,"oldest_pending_seconds":null},"mailboxes":[{"queue":"support","state":"up","connected":false,"last_fetch_seconds_ago":null}],"smtp":{"auth_failing":false,"auth_failing_seconds":null}}"#
    );
    // The fixture's mail is dated 2025 and nothing sends it: the outbox's
    // oldest mail is far over half an hour old, which is a 503.
    conversation(&mut fx);
    let stuck = get(&router, "/healthz", &[]).await;
    assert_eq!(stuck.status, StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(&stuck.body).unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["database"], "ok");
    assert!(body["outbox"]["pending"].as_i64().unwrap() > 0, "{body}");
    assert!(
        body["outbox"]["oldest_pending_seconds"].as_i64().unwrap() > 30 * 60,
        "{body}"
    );

    let bearer = format!("Bearer {AGENT_KEY}");
    let metrics = get(&router, "/metrics", &[(header::AUTHORIZATION, &bearer)]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header(header::CONTENT_TYPE)
            .starts_with("text/plain; version=0.0.4")
    );
    let text = &metrics.body;
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .expect("a number")
    };
    assert_eq!(value("postdesk_mails_ingested_total"), 6.0);
    assert_eq!(value("postdesk_tickets{status=\"open\"}"), 1.0);
    assert_eq!(value("postdesk_tickets{status=\"new\"}"), 1.0);
    assert_eq!(value("postdesk_tickets{status=\"closed\"}"), 0.0);
    assert!(
        value("postdesk_outbox_pending") >= 3.0,
        "nothing sends in this test"
    );
    assert_eq!(value("postdesk_outbox_failed"), 0.0);
    assert_eq!(value("postdesk_imap_connected{queue=\"support\"}"), 0.0);
    assert!(value("postdesk_imap_seconds_since_last_fetch{queue=\"support\"}").is_nan());
    assert!(!text.contains("customer.test"), "counts only");

    let css = get(&router, "/static/style.css", &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header(header::CONTENT_TYPE), "text/css; charset=utf-8");
    assert!(css.body.contains("prefers-color-scheme"));
}

#[test]
fn tokens_rotate_prints_new_links_and_kills_the_old_ones() {
    let dir = crate::support::temp_dir();
    let db = dir.path().join("rotate.db");
    let postdesk = |args: &[&str], stdin: Option<&[u8]>| {
        let url = (
            "POSTDESK__SUPPORT__PUBLIC_URL",
            "https://support.example.test/",
        );
        crate::support::run_cli(&db, &[url], args, stdin)
    };
    let mail = b"From: Ann <ann@customer.test>\r\nTo: tickets@example.com\r\nSubject: Leaked link\r\nMessage-ID: <rotate-1@customer.test>\r\n\r\nHello.\r\n";
    assert_eq!(
        postdesk(&["ingest", "-"], Some(mail)).status.code(),
        Some(0)
    );

    let out = postdesk(&["tokens", "rotate", "1"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("2 old links"), "{printed}");
    let ticket = token_after(&printed, "https://support.example.test/t/");
    let requester = token_after(&printed, "https://support.example.test/r/");
    let store = crate::support::open_store(&db);
    let page = store
        .ticket_page(&ticket)
        .expect("a read")
        .expect("the new link works");
    assert_eq!(page.summary.subject, "Leaked link");
    assert!(
        store
            .requester_page(&requester, postdesk::store::TicketFilter::All, 1)
            .expect("a read")
            .is_some()
    );

    assert_eq!(
        postdesk(&["tokens", "rotate", "99"], None).status.code(),
        Some(1)
    );
    assert_eq!(
        postdesk(&["tokens", "rotate", "x"], None).status.code(),
        Some(2)
    );
}

/// Issue 12 §4: machine mail that answers no ticket (an auto-reply, a
/// bounce) is kept apart as ignored, not in the quarantine; a mail that
/// cannot be read is the other way round; `/metrics` counts each.
#[tokio::test]
async fn machine_mail_off_a_ticket_is_ignored_and_only_faults_are_quarantined() {
    let mut fx = PageFixture::new(Some(AGENT_KEY));
    let auto = "From: Bob <bob@customer.test>\r\nTo: tickets@example.com\r\n\
        Subject: Out of office\r\nMessage-ID: <ooo-1@customer.test>\r\n\
        Auto-Submitted: auto-replied\r\n\r\nI am away until Monday.\r\n";
    let bounce = "From: Mail Delivery System <MAILER-DAEMON@mx.customer.test>\r\n\
        To: tickets@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n\
        Message-ID: <dsn-1@mx.customer.test>\r\n\r\nThe mail could not be delivered.\r\n";
    for raw in [auto, bounce] {
        match fx.ingest(raw) {
            IngestReport::Ignored { reason } => {
                assert!(reason.contains("answers no ticket"), "{reason}")
            }
            other => panic!("ignored expected: {other:?}"),
        }
    }
    let unreadable = "this is not a mail header\r\nneither is this\r\n\r\nbody\r\n";
    let fault = fx.ingest(unreadable);
    assert!(
        matches!(&fault, IngestReport::Quarantined { reason } if reason.contains("cannot be read")),
        "{fault:?}"
    );

    let quarantined = fx.store.quarantine_list().unwrap();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(quarantined[0].reason.contains("cannot be read"));
    let ignored = fx.store.kept_list(Kept::Ignored).unwrap();
    let keys: Vec<&str> = ignored.iter().map(|i| i.dedup_key.as_str()).collect();
    assert_eq!(keys, ["dsn-1@mx.customer.test", "ooo-1@customer.test"]);

    let metrics = get(&fx.admin_router(), "/metrics", &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        "postdesk_mails_ingested_total 3\n",
        "postdesk_mails_quarantined_total 1\n",
        "postdesk_mails_ignored_total 2\n",
    ] {
        assert!(metrics.body.contains(line), "{line}: {}", metrics.body);
    }
}
