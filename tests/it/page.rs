//! The status page in process: the router over a store in a temp dir,
//! filled through the public API (`ingest_mail`, agents' mails signed with
//! the pipeline's own tokens), requests sent with `oneshot`. Checks what a
//! link shows and what it must never show: other tickets, internal notes,
//! automatic mail, live markup; and the agent queue's key, `/metrics`,
//! attachments, rotation. `PageFixture` is shared with the browser test.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, Duration, TimeZone, Utc};
use tower::ServiceExt;

use postdesk::domain::TicketNumber;
use postdesk::imap::ImapStatus;
use postdesk::ingest::Pipeline;
use postdesk::settings::Settings;
use postdesk::store::{IngestReport, MailSource, Store};
use postdesk::tokens::Purpose;

pub const AGENT: &str = "agent@example.test";
pub const AGENT_KEY: &str = "agent-key-for-tests-0123456789";

/// A store with a pipeline and a clock that moves one minute per mail.
pub struct PageFixture {
    _dir: tempfile::TempDir,
    pub settings: Settings,
    pub store: Arc<Store>,
    pub pipeline: Pipeline,
    now: DateTime<Utc>,
    serial: usize,
}

/// A ticket just opened, with the links its confirmation carries.
#[derive(Debug, Clone)]
pub struct Opened {
    pub number: i64,
    pub ticket_token: String,
    pub requester_token: String,
}

impl PageFixture {
    pub fn new(agent_key: Option<&str>) -> PageFixture {
        let dir = crate::support::temp_dir();
        let env = [
            ("SUPPORT__ADDRESS", "tickets@example.test".to_string()),
            ("SUPPORT__NAME", "Example Support".to_string()),
            ("SUPPORT__AGENTS", AGENT.to_string()),
            ("SUPPORT__PUBLIC_URL", "http://127.0.0.1:8025".to_string()),
            ("LIMITS__AUTO_REPLIES_PER_HOUR", "100000".to_string()),
            (
                "DATABASE__PATH",
                dir.path().join("page.db").display().to_string(),
            ),
            (
                "WEB__AGENT_TOKEN",
                agent_key.unwrap_or_default().to_string(),
            ),
        ];
        let env = env
            .into_iter()
            .map(|(k, v)| (format!("POSTDESK__{k}"), v))
            .collect();
        let settings = Settings::load_with_env(None, env).expect("test settings are valid");
        let store = Arc::new(Store::open(&settings.database.path).expect("the store opens"));
        let pipeline = Pipeline::new(&settings, "page-test-secret");
        PageFixture {
            _dir: dir,
            settings,
            store,
            pipeline,
            now: Utc
                .with_ymd_and_hms(2025, 3, 3, 9, 0, 0)
                .single()
                .expect("a date"),
            serial: 0,
        }
    }

    pub fn router(&self) -> Router {
        postdesk::web::router(
            Arc::clone(&self.store),
            &self.settings,
            Arc::new(ImapStatus::default()),
        )
    }

    /// Ingests one raw mail, one minute after the previous one.
    pub fn ingest(&mut self, raw: &str) -> IngestReport {
        self.now += Duration::minutes(1);
        self.store
            .ingest_mail(&self.pipeline, raw.as_bytes(), &MailSource::Pipe, self.now)
            .expect("the mail is ingested")
    }

    /// A mail from `from` (a full From value) with optional extra headers,
    /// a text body and optional attachments `(filename, type, content)`.
    pub fn mail(
        &mut self,
        from: &str,
        subject: &str,
        body: &str,
        headers: &[(&str, String)],
        attachments: &[(&str, &str, &str)],
    ) -> String {
        self.serial += 1;
        let mut raw = format!(
            "From: {from}\r\nTo: Example Support <tickets@example.test>\r\nSubject: {subject}\r\n\
             Message-ID: <page-{}-{}@customer.test>\r\nDate: {}\r\nMIME-Version: 1.0\r\n",
            self.serial,
            std::process::id(),
            (self.now + Duration::minutes(1)).to_rfc2822()
        );
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if attachments.is_empty() {
            raw.push_str(&format!(
                "Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
            ));
            return raw;
        }
        raw.push_str("Content-Type: multipart/mixed; boundary=\"=-part\"\r\n\r\n");
        raw.push_str(&format!(
            "--=-part\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        ));
        for (filename, media_type, content) in attachments {
            raw.push_str(&format!(
                "--=-part\r\nContent-Type: {media_type}\r\n\
                 Content-Disposition: attachment; filename=\"{filename}\"\r\n\r\n{content}\r\n"
            ));
        }
        raw.push_str("--=-part--\r\n");
        raw
    }

    /// A customer opens a ticket; its confirmation's links are returned.
    pub fn open_ticket(
        &mut self,
        from: &str,
        subject: &str,
        body: &str,
        attachments: &[(&str, &str, &str)],
    ) -> Opened {
        let raw = self.mail(from, subject, body, &[], attachments);
        let number = match self.ingest(&raw) {
            IngestReport::NewTicket { number, .. } => number.0,
            other => panic!("expected a new ticket, got {other:?}"),
        };
        let detail = self.detail(number);
        let confirmation = detail
            .messages
            .iter()
            .find(|m| m.kind == "confirmation")
            .expect("a confirmation with the links");
        Opened {
            number,
            ticket_token: token_after(&confirmation.text, "/t/"),
            requester_token: token_after(&confirmation.text, "/r/"),
        }
    }

    /// A follow-up mail on ticket `number` (threaded by its tag).
    pub fn follow_up(&mut self, from: &str, number: i64, body: &str, headers: &[(&str, String)]) {
        let raw = self.mail(
            from,
            &format!("Re: [Ticket #{number}] follow-up"),
            body,
            headers,
            &[],
        );
        match self.ingest(&raw) {
            IngestReport::FollowUp { number: n, .. } => assert_eq!(n.0, number),
            other => panic!("expected a follow-up on #{number}, got {other:?}"),
        }
    }

    /// An authenticated agent's mail on ticket `number` (answering a token
    /// signed for the agent, as a notification would carry).
    pub fn agent_mail(&mut self, number: i64, body: &str, attachments: &[(&str, &str, &str)]) {
        let signed = self
            .pipeline
            .signer
            .message_id(
                TicketNumber(number),
                Purpose::Notification,
                Some(AGENT),
                &self.pipeline.domain,
            )
            .expect("a signed id");
        let raw = self.mail(
            &format!("Alice Agent <{AGENT}>"),
            &format!("Re: [Ticket #{number}] notification"),
            body,
            &[("In-Reply-To", format!("<{signed}>"))],
            attachments,
        );
        match self.ingest(&raw) {
            IngestReport::FollowUp { number: n, .. } => assert_eq!(n.0, number),
            other => panic!("expected the agent's mail on #{number}, got {other:?}"),
        }
    }

    pub fn detail(&self, number: i64) -> postdesk::store::TicketDetail {
        self.store
            .ticket_detail(TicketNumber(number))
            .expect("a read")
            .expect("the ticket exists")
    }

    /// The id of the attachment named `filename` on ticket `number`.
    pub fn attachment_id(&self, number: i64, filename: &str) -> i64 {
        self.detail(number)
            .messages
            .iter()
            .flat_map(|m| m.attachments.iter())
            .find(|a| a.filename == filename)
            .unwrap_or_else(|| panic!("no attachment {filename:?} on #{number}"))
            .id
    }
}

/// The 32-hex token after `marker` in a mail's text.
pub fn token_after(text: &str, marker: &str) -> String {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} link in {text:?}"))
        + marker.len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(token.len(), 32, "a 128-bit token after {marker}");
    token
}

/// A response's status, headers and body as text.
pub struct Page {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

pub async fn get(router: &Router, uri: &str, headers: &[(header::HeaderName, &str)]) -> Page {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).expect("a request"))
        .await
        .expect("the router answers");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The payloads that must show as text and never run.
pub const SUBJECT_PAYLOAD: &str = "Printer <script>window.__pwned=1</script> on fire";
pub const NAME_PAYLOAD: &str = "Ann <img src=x onerror=window.__pwned=2>";
pub const BODY_PAYLOAD: &str =
    "It smokes.\n<script>window.__pwned=3</script><b onmouseover=\"window.__pwned=4\">bold?</b>";
pub const FILE_PAYLOAD: &str = "<svg onload=window.__pwned=5>.html";

fn assert_secure(page: &Page) {
    let csp = page.header(header::CONTENT_SECURITY_POLICY);
    assert!(csp.contains("default-src 'none'"), "CSP: {csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(page.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(page.header(header::REFERRER_POLICY), "no-referrer");
    assert_eq!(page.header(header::X_FRAME_OPTIONS), "DENY");
}

fn assert_no_live_markup(html: &str) {
    let lower = html.to_ascii_lowercase();
    for live in ["<script", "<img", "<svg", "<b ", "style="] {
        assert!(!lower.contains(live), "{live} on the page:\n{html}");
    }
}

/// Ann's ticket with every payload, a quoted reply, an agent's public
/// reply, a note and an auto-reply; Bob's ticket beside it.
pub struct Conversation {
    pub ann: Opened,
    pub bob: Opened,
}

pub fn conversation(fx: &mut PageFixture) -> Conversation {
    let ann_from = format!("\"{NAME_PAYLOAD}\" <ann@customer.test>");
    let ann = fx.open_ticket(
        &ann_from,
        SUBJECT_PAYLOAD,
        BODY_PAYLOAD,
        &[(FILE_PAYLOAD, "text/html", "<script>alert(1)</script>")],
    );
    let bob = fx.open_ticket(
        "Bob <bob@customer.test>",
        "Bob's private matter",
        "Bob's secret text.",
        &[("bob.txt", "text/plain", "bob's bytes")],
    );
    fx.follow_up(
        &ann_from,
        ann.number,
        "Any news?\n\nOn Mon, 3 Mar 2025 at 09:01, Ann wrote:\n> It smokes.\n> Still.",
        &[],
    );
    fx.agent_mail(ann.number, "Hello Ann,\n\nplease unplug it first.", &[]);
    fx.agent_mail(
        ann.number,
        "#note\nInternal: customer sounds upset.",
        &[("internal.txt", "text/plain", "internal only")],
    );
    fx.follow_up(
        "ann@customer.test",
        ann.number,
        "I am out of the office until Monday.",
        &[("Auto-Submitted", "auto-replied".to_string())],
    );
    Conversation { ann, bob }
}

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
    let mut fx = PageFixture::new(None);
    conversation(&mut fx);
    let router = fx.router();
    let health = get(&router, "/healthz", &[]).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok")
    );

    let metrics = get(&router, "/metrics", &[]).await;
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
    assert_eq!(value("postdesk_imap_connected"), 0.0);
    assert!(value("postdesk_imap_seconds_since_last_fetch").is_nan());
    assert!(!text.contains("customer.test"), "counts only");

    let css = get(&router, "/static/style.css", &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header(header::CONTENT_TYPE), "text/css; charset=utf-8");
    assert!(css.body.contains("prefers-color-scheme"));
}
