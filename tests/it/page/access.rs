//! Who reaches the agent pages and `/metrics` (issue 17): `/metrics` only
//! with the agent key on the page listener and open on the admin one,
//! wrong keys throttled per client address, and the agent cookie refused
//! once tampered with or out of its day.

use axum::http::{StatusCode, header};

use super::fixture::*;

const MALLORY: &str = "203.0.113.7:40000";
const AGENT_DESK: &str = "198.51.100.20:51000";

#[tokio::test]
async fn metrics_need_the_agent_key_on_the_page_and_are_open_on_the_admin_listener() {
    let mut fx = PageFixture::new(Some(AGENT_KEY));
    conversation(&mut fx);
    let page = fx.router();
    for headers in [
        vec![],
        vec![(header::AUTHORIZATION, "Bearer not-the-key")],
        vec![(header::COOKIE, "postdesk_agent=1.00")],
    ] {
        let refused = get(&page, "/metrics", &headers).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{headers:?}");
        assert!(!refused.body.contains("postdesk_"), "{headers:?}");
    }
    let bearer = format!("Bearer {AGENT_KEY}");
    let allowed = get(&page, "/metrics", &[(header::AUTHORIZATION, &bearer)]).await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert!(allowed.body.contains("postdesk_mails_ingested_total 6\n"));
    // `/healthz` needs no key (its fixture's unsent mail makes it a 503).
    let health = get(&page, "/healthz", &[]).await;
    assert_ne!(health.status, StatusCode::NOT_FOUND);
    assert!(
        health.body.contains(r#""database":"ok""#),
        "{}",
        health.body
    );

    let admin = fx.admin_router();
    let open = get(&admin, "/metrics", &[]).await;
    assert_eq!(open.status, StatusCode::OK);
    assert!(open.body.contains("postdesk_mails_ingested_total 6\n"));
    let health = get(&admin, "/healthz", &[]).await;
    assert!(
        health.body.contains(r#""database":"ok""#),
        "{}",
        health.body
    );
    for closed in ["/agent", "/", &format!("/agent?key={AGENT_KEY}")] {
        let page = get(&admin, closed, &[]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{closed} on admin");
    }

    let keyless = PageFixture::new(None);
    let refused = get(
        &keyless.router(),
        "/metrics",
        &[(header::AUTHORIZATION, &bearer)],
    )
    .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "no key set: closed");
    assert_eq!(
        get(&keyless.admin_router(), "/metrics", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn wrong_keys_are_throttled_per_client_address() {
    let mut fx = PageFixture::new(Some(AGENT_KEY));
    conversation(&mut fx);
    let router = fx.router();
    for n in 0..10 {
        let guess = if n % 2 == 0 {
            get_from(&router, MALLORY, &format!("/agent?key=guess{n}"), &[]).await
        } else {
            let bearer = format!("Bearer guess{n}");
            get_from(
                &router,
                MALLORY,
                "/agent/t/1",
                &[(header::AUTHORIZATION, &bearer)],
            )
            .await
        };
        assert_eq!(guess.status, StatusCode::NOT_FOUND, "guess {n}");
    }
    // The eleventh try is refused without the key being checked, even the
    // right key, on every agent route and /metrics.
    let bearer = format!("Bearer {AGENT_KEY}");
    for (uri, headers) in [
        (format!("/agent?key={AGENT_KEY}"), vec![]),
        (
            "/agent".to_string(),
            vec![(header::AUTHORIZATION, bearer.as_str())],
        ),
        (
            "/metrics".to_string(),
            vec![(header::AUTHORIZATION, bearer.as_str())],
        ),
    ] {
        let refused = get_from(&router, MALLORY, &uri, &headers).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{uri}");
        let wait: u64 = refused
            .header(header::RETRY_AFTER)
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(!refused.body.contains("Ticket"), "{uri}");
    }
    // Other clients are not locked out, and customer links still work.
    let signed = get_from(&router, AGENT_DESK, &format!("/agent?key={AGENT_KEY}"), &[]).await;
    assert_eq!(signed.status, StatusCode::OK);
    // An agent already signed in behind the same (shared) address keeps
    // working: a live cookie is not a guess.
    let cookie = signed.header(header::SET_COOKIE).to_string();
    let pair = cookie.split(';').next().expect("name=value").to_string();
    let behind_proxy = get_from(&router, MALLORY, "/agent", &[(header::COOKIE, &pair)]).await;
    assert_eq!(
        behind_proxy.status,
        StatusCode::OK,
        "a live cookie still works"
    );
    let queue = get_from(
        &router,
        AGENT_DESK,
        "/agent",
        &[(header::AUTHORIZATION, &bearer)],
    )
    .await;
    assert_eq!(queue.status, StatusCode::OK);
    let c = conversation(&mut fx);
    let customer = get_from(&router, MALLORY, &format!("/t/{}", c.ann.ticket_token), &[]).await;
    assert_eq!(
        customer.status,
        StatusCode::OK,
        "customer pages are not throttled"
    );
}

#[tokio::test]
async fn a_tampered_agent_cookie_is_refused() {
    let mut fx = PageFixture::new(Some(AGENT_KEY));
    conversation(&mut fx);
    let router = fx.router();
    let signed = get(&router, &format!("/agent?key={AGENT_KEY}"), &[]).await;
    let cookie = signed.header(header::SET_COOKIE).to_string();
    assert!(cookie.contains("Max-Age=43200"), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value").to_string();
    let value = pair
        .strip_prefix("postdesk_agent=")
        .expect("the agent cookie");
    let (issued, mac) = value.split_once('.').expect("TIME.MAC");
    let issued: i64 = issued.parse().expect("an issue time");
    let now = chrono::Utc::now().timestamp();
    assert!((now - issued).abs() < 60, "issued now");

    let fresh = get(&router, "/agent", &[(header::COOKIE, &pair)]).await;
    assert_eq!(fresh.status, StatusCode::OK, "a fresh cookie is admitted");
    for forged in [
        // The same MAC with a later or an earlier issue time.
        format!("postdesk_agent={}.{mac}", issued + 3600),
        format!("postdesk_agent={}.{mac}", issued - 13 * 3600),
        // The cookie of the old scheme: a bare digest, no time.
        format!("postdesk_agent={mac}"),
        format!("postdesk_agent={issued}.{}", "0".repeat(64)),
    ] {
        let page = get(&router, "/agent", &[(header::COOKIE, &forged)]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{forged}");
    }
}
