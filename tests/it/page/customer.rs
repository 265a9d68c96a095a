//! What customers' links show: one ticket's public conversation as text,
//! attachments only through their own ticket, a requester's own tickets
//! with filter counts and pages, and a plain 404 for anything else.

use axum::http::{StatusCode, header};
use chrono::Utc;

use super::fixture::*;
use postdesk::domain::TicketNumber;
use postdesk::store::IngestReport;

#[tokio::test]
async fn a_ticket_link_shows_its_public_conversation_as_text() {
    let mut fx = PageFixture::new(None);
    let c = conversation(&mut fx);
    let router = fx.router();
    let page = get(&router, &format!("/t/{}", c.ann.ticket_token), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_secure(&page);
    assert_eq!(page.header(header::CACHE_CONTROL), "no-store");
    let html = &page.body;
    assert_no_live_markup(html);
    assert!(html.contains("Printer &#60;script&#62;") || html.contains("Printer &lt;script&gt;"));
    assert!(html.contains(&format!("Ticket #{}", c.ann.number)));
    assert!(html.contains("Open"), "the status");
    assert!(
        html.contains("We are working on your request."),
        "explained"
    );
    assert!(html.contains("Created") && html.contains("Last activity"));
    assert!(html.contains(" UTC</time>"), "dates name their zone");
    // In order: the first mail, the customer's reply, the agent's reply.
    let first = html.find("It smokes.").expect("the first mail");
    let news = html.find("Any news?").expect("the follow-up");
    let agent = html
        .find("please unplug it first.")
        .expect("the agent's reply");
    assert!(first < news && news < agent, "the conversation is in order");
    assert!(html.contains("<details"), "the quote is folded");
    assert!(html.contains("Show quoted text"));
    assert!(html.contains("Alice Agent"), "the agent by display name");
    assert!(!html.contains(AGENT), "never the agent's address");
    for hidden in [
        "customer sounds upset",
        "internal.txt",
        "out of the office",
        "we have received your request and opened",
        "Bob",
    ] {
        assert!(!html.contains(hidden), "{hidden:?} is not for this page");
    }
    let file = fx.attachment_id(c.ann.number, FILE_PAYLOAD);
    assert!(html.contains(&format!("href=\"/t/{}/a/{file}\"", c.ann.ticket_token)));
}

#[tokio::test]
async fn attachments_download_only_through_their_own_ticket() {
    let mut fx = PageFixture::new(None);
    let c = conversation(&mut fx);
    let router = fx.router();
    let ann_file = fx.attachment_id(c.ann.number, FILE_PAYLOAD);
    let bob_file = fx.attachment_id(c.bob.number, "bob.txt");
    let note_file = fx.attachment_id(c.ann.number, "internal.txt");

    let page = get(
        &router,
        &format!("/t/{}/a/{ann_file}", c.ann.ticket_token),
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body, "<script>alert(1)</script>");
    assert_eq!(
        page.header(header::CONTENT_TYPE),
        "application/octet-stream",
        "HTML is never served as HTML"
    );
    let disposition = page.header(header::CONTENT_DISPOSITION);
    assert!(
        disposition.starts_with("attachment; filename=\""),
        "{disposition}"
    );
    assert!(!disposition.contains('<'), "{disposition}");
    assert!(
        page.header(header::CONTENT_SECURITY_POLICY)
            .contains("sandbox")
    );
    assert_eq!(page.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");

    let bob = get(
        &router,
        &format!("/t/{}/a/{bob_file}", c.bob.ticket_token),
        &[],
    )
    .await;
    assert_eq!(bob.status, StatusCode::OK);
    assert_eq!(bob.header(header::CONTENT_TYPE), "text/plain");

    for (token, id) in [
        (&c.ann.ticket_token, bob_file),
        (&c.bob.ticket_token, ann_file),
        (&c.ann.ticket_token, note_file),
        (&c.ann.ticket_token, 999_999),
    ] {
        let page = get(&router, &format!("/t/{token}/a/{id}"), &[]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "/t/…/a/{id}");
    }
    let r = &c.ann.requester_token;
    let ok = get(
        &router,
        &format!("/r/{r}/t/{}/a/{ann_file}", c.ann.number),
        &[],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    for uri in [
        format!("/r/{r}/t/{}/a/{bob_file}", c.bob.number),
        format!("/r/{r}/t/{}/a/{bob_file}", c.ann.number),
        format!("/r/{r}/t/{}/a/{note_file}", c.ann.number),
    ] {
        assert_eq!(
            get(&router, &uri, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{uri}"
        );
    }
}

/// The rows' ticket numbers in page order.
fn row_numbers(html: &str, token: &str) -> Vec<i64> {
    let marker = format!("href=\"/r/{token}/t/");
    html.match_indices(&marker)
        .map(|(i, _)| {
            html[i + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .expect("a number")
        })
        .collect()
}

fn tab(html: &str, label: &str) -> (i64, bool) {
    let at = html
        .find(&format!("<span class=\"label\">{label}</span>"))
        .unwrap_or_else(|| panic!("no tab {label}"));
    let count: String = html[at..]
        .split("<span class=\"count\">(")
        .nth(1)
        .expect("a count")
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let link_start = html[..at].rfind("<a ").expect("a link");
    let current = html[link_start..at].contains("aria-current=\"page\"");
    (count.parse().expect("a count"), current)
}

#[tokio::test]
async fn a_requester_link_lists_only_that_requesters_tickets_newest_first() {
    let mut fx = PageFixture::new(None);
    let mut carol = Vec::new();
    for i in 0..55 {
        let body = format!("Request {i}");
        carol.push(fx.open_ticket(
            "Carol <carol@customer.test>",
            &format!("Carol {i}"),
            &body,
            &[],
        ));
    }
    let dave = fx.open_ticket("dave@customer.test", "Dave's ticket", "Dave.", &[]);
    for t in &carol[..3] {
        fx.agent_mail(t.number, "#resolve", &[]);
    }
    for t in &carol[3..5] {
        fx.agent_mail(t.number, "#close", &[]);
    }
    let token = carol[0].requester_token.clone();
    let router = fx.router();

    let page = get(&router, &format!("/r/{token}"), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_secure(&page);
    let html = &page.body;
    assert_eq!(tab(html, "All"), (55, true));
    assert_eq!(tab(html, "Open or pending"), (50, false));
    assert_eq!(tab(html, "Resolved or closed"), (5, false));
    let rows = row_numbers(html, &token);
    assert_eq!(rows.len(), 50, "50 a page");
    // The five closed by an agent were active last, newest first; then the
    // rest by when they were opened, newest first.
    let mut expected: Vec<i64> = carol[..5].iter().rev().map(|t| t.number).collect();
    expected.extend(carol[5..].iter().rev().map(|t| t.number).take(45));
    assert_eq!(rows, expected);
    assert!(!html.contains("Dave"), "nobody else's tickets");
    assert!(html.contains("carol@customer.test"));
    assert!(html.contains("Page 1 of 2"));

    let second = get(&router, &format!("/r/{token}?filter=all&page=2"), &[]).await;
    assert_eq!(row_numbers(&second.body, &token).len(), 5);
    let closed = get(&router, &format!("/r/{token}?filter=closed"), &[]).await;
    assert_eq!(tab(&closed.body, "Resolved or closed"), (5, true));
    assert_eq!(row_numbers(&closed.body, &token).len(), 5);
    assert!(closed.body.contains("Resolved") && closed.body.contains("Closed"));
    let open = get(&router, &format!("/r/{token}?filter=open&page=9"), &[]).await;
    assert_eq!(
        row_numbers(&open.body, &token).len(),
        50,
        "a page past the end shows the last"
    );
    let odd = get(&router, &format!("/r/{token}?filter=%3Cx%3E&page=-2"), &[]).await;
    assert_eq!(odd.status, StatusCode::OK);
    assert_eq!(tab(&odd.body, "All"), (55, true));

    // Any of Carol's requester links opens the same list; a ticket opens
    // from it, Dave's does not.
    let other = get(&router, &format!("/r/{}", carol[9].requester_token), &[]).await;
    assert_eq!(tab(&other.body, "All"), (55, true));
    let ticket = get(&router, &format!("/r/{token}/t/{}", carol[7].number), &[]).await;
    assert_eq!(ticket.status, StatusCode::OK);
    assert!(ticket.body.contains("Request 7"));
    assert!(
        ticket.body.contains(&format!("href=\"/r/{token}\"")),
        "a way back"
    );
    let foreign = get(&router, &format!("/r/{token}/t/{}", dave.number), &[]).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    // Scopes do not mix.
    let crossed = get(&router, &format!("/r/{}", carol[0].ticket_token), &[]).await;
    assert_eq!(crossed.status, StatusCode::NOT_FOUND);
    let crossed = get(&router, &format!("/t/{token}"), &[]).await;
    assert_eq!(crossed.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_malformed_and_rotated_links_are_plain_404s() {
    let mut fx = PageFixture::new(None);
    let ann = fx.open_ticket("ann@customer.test", "Rotate me", "Hello.", &[]);
    let router = fx.router();
    for uri in [
        "/t/0123456789abcdef0123456789abcdef".to_string(),
        "/t/short".to_string(),
        format!("/t/{}", ann.ticket_token.to_ascii_uppercase()),
        "/r/0123456789abcdef0123456789abcdef".to_string(),
        format!("/r/{}/t/abc", ann.requester_token),
        format!("/t/{}/a/-1", ann.ticket_token),
        "/nothing/here".to_string(),
    ] {
        let page = get(&router, &uri, &[]).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{uri}");
        assert_secure(&page);
        assert!(page.body.contains("This link is not valid"), "{uri}");
    }
    let links = fx
        .store
        .rotate_ticket_links(TicketNumber(ann.number), Utc::now())
        .expect("rotation")
        .expect("the ticket exists");
    assert!(links.revoked >= 2, "the ticket and requester links");
    for old in [
        format!("/t/{}", ann.ticket_token),
        format!("/r/{}", ann.requester_token),
    ] {
        assert_eq!(
            get(&router, &old, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{old}"
        );
    }
    for new in [
        format!("/t/{}", links.ticket_token),
        format!("/r/{}", links.requester_token),
    ] {
        assert_eq!(
            get(&router, &new, &[]).await.status,
            StatusCode::OK,
            "{new}"
        );
    }
    assert!(
        fx.store
            .rotate_ticket_links(TicketNumber(999), Utc::now())
            .expect("rotation")
            .is_none()
    );
}

/// The notifications stored on ticket `number`.
fn notifications(fx: &PageFixture, number: i64) -> usize {
    let detail = fx.detail(number);
    detail
        .messages
        .iter()
        .filter(|m| m.kind == "notification")
        .count()
}

/// Mallory learned the Message-ID of Ann's first mail (a forwarded copy,
/// a list archive) and threads a phishing mail with an attachment onto her
/// ticket; Eve, whom Mallory put in Cc (only proposed), does the same.
/// Neither reaches Ann's pages; Ann's and her Cc Carol's follow-ups do;
/// the agents see the mails, marked, and are notified as usual.
#[tokio::test]
async fn a_strangers_mail_threaded_by_a_known_message_id_stays_off_the_customers_pages() {
    let mut fx = PageFixture::new(Some(AGENT_KEY));
    let cc = [("Cc", "Carol <carol@customer.test>".to_string())];
    let ann = fx.open_ticket_with("ann@customer.test", "Refund", "My refund?", &cc, &[]);
    let known = format!("<{}>", fx.detail(ann.number).messages[0].message_id);
    let before = notifications(&fx, ann.number);
    let phish = [
        ("In-Reply-To", known.clone()),
        ("Cc", "eve@evil.test".to_string()),
    ];
    let raw = fx.mail(
        "Billing <mallory@evil.test>",
        "Re: your refund",
        "Please pay the release fee at evil.test/pay.",
        &phish,
        &[("fee-invoice.pdf", "application/pdf", "%PDF-phish")],
    );
    let report = fx.ingest(&raw);
    assert!(
        matches!(report, IngestReport::FollowUp { number, .. } if number.0 == ann.number),
        "the attack threads: {report:?}"
    );
    assert!(notifications(&fx, ann.number) > before, "agents are told");
    assert_eq!(fx.detail(ann.number).proposed_cc, vec!["eve@evil.test"]);
    let raw = fx.mail(
        "eve@evil.test",
        "Re: your refund",
        "Eve scam text.",
        &[("In-Reply-To", known)],
        &[],
    );
    assert!(matches!(fx.ingest(&raw), IngestReport::FollowUp { .. }));
    fx.follow_up("ann@customer.test", ann.number, "Ann writes again.", &[]);
    let carol = fx.mail(
        "Carol <carol@customer.test>",
        &format!("Re: [Ticket #{}] Refund", ann.number),
        "Carol adds a detail.",
        &[],
        &[("carol.txt", "text/plain", "carol's bytes")],
    );
    assert!(matches!(fx.ingest(&carol), IngestReport::FollowUp { .. }));
    fx.agent_mail(ann.number, "Dear Ann, no fee is due.", &[]);

    let (n, t, r) = (ann.number, &ann.ticket_token, &ann.requester_token);
    let fee = fx.attachment_id(n, "fee-invoice.pdf");
    let carol_file = fx.attachment_id(n, "carol.txt");
    let router = fx.router();
    for uri in [format!("/t/{t}"), format!("/r/{r}/t/{n}")] {
        let page = get(&router, &uri, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        for shown in ["My refund?", "Ann writes again.", "Carol adds a detail."] {
            assert!(page.body.contains(shown), "{shown:?} on {uri}");
        }
        assert!(page.body.contains("no fee is due"), "the agent's reply");
        for hidden in ["release fee", "fee-invoice", "mallory", "Billing", "Eve"] {
            assert!(!page.body.contains(hidden), "{hidden:?} on {uri}");
        }
        assert!(!page.body.contains("takes no part"), "no agents' mark");
    }
    for (uri, status) in [
        (format!("/t/{t}/a/{fee}"), StatusCode::NOT_FOUND),
        (format!("/r/{r}/t/{n}/a/{fee}"), StatusCode::NOT_FOUND),
        (format!("/t/{t}/a/{carol_file}"), StatusCode::OK),
        (format!("/r/{r}/t/{n}/a/{carol_file}"), StatusCode::OK),
    ] {
        assert_eq!(get(&router, &uri, &[]).await.status, status, "{uri}");
    }
    let bearer = format!("Bearer {AGENT_KEY}");
    let agents = get(
        &router,
        &format!("/agent/t/{n}"),
        &[(header::AUTHORIZATION, &bearer)],
    )
    .await;
    assert_eq!(agents.status, StatusCode::OK);
    assert!(agents.body.contains("release fee") && agents.body.contains("Eve scam"));
    let mark = "Not shown to the customer: the sender takes no part in this ticket.";
    assert_eq!(agents.body.matches(mark).count(), 2, "Mallory's and Eve's");
    let agent_fee = format!("/agent/t/{n}/a/{fee}");
    let download = get(&router, &agent_fee, &[(header::AUTHORIZATION, &bearer)]).await;
    assert_eq!(download.status, StatusCode::OK, "agents still get it");

    // An agent who decides Mallory belongs adds her; then her mail shows.
    fx.agent_mail(n, "#cc mallory@evil.test", &[]);
    let page = get(&router, &format!("/t/{t}"), &[]).await;
    assert!(page.body.contains("release fee"), "shown once she is a Cc");
    assert!(
        !page.body.contains("Eve scam"),
        "Eve is still only proposed"
    );
}
