//! The fixture of the page tests: a store in a temp dir with a pipeline
//! and a clock that moves one minute per mail, filled through the public
//! API only (`ingest_mail`; agents' mails answer a token signed for the
//! agent, as a notification carries); requests through `oneshot`; the
//! payloads that must show as text; the checks every page must pass.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, Duration, TimeZone, Utc};
use tower::ServiceExt;

use postdesk::domain::TicketNumber;
use postdesk::imap::ImapBoard;
use postdesk::ingest::Pipeline;
use postdesk::settings::Settings;
use postdesk::store::{IngestReport, MailSource, Store};
use postdesk::tokens::{IssueDay, Purpose};

pub const AGENT: &str = "agent@example.test";
pub const AGENT_KEY: &str = "agent-key-for-tests-0123456789";

/// A store with a pipeline and a clock that moves one minute per mail.
/// The store is dropped before its directory (and database) go.
pub struct PageFixture {
    pub settings: Settings,
    pub store: Arc<Store>,
    pub pipeline: Pipeline,
    now: DateTime<Utc>,
    serial: usize,
    _dir: crate::support::TestDir,
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
        let db = crate::support::test_database(&dir.path().join("page.db"));
        let env = [
            ("SUPPORT__ADDRESS", "tickets@example.test".to_string()),
            ("SUPPORT__NAME", "Example Support".to_string()),
            ("SUPPORT__AGENTS", AGENT.to_string()),
            ("SUPPORT__PUBLIC_URL", "http://127.0.0.1:8025".to_string()),
            ("LIMITS__AUTO_REPLIES_PER_HOUR", "100000".to_string()),
            (
                "WEB__AGENT_TOKEN",
                agent_key.unwrap_or_default().to_string(),
            ),
        ];
        let env = env
            .into_iter()
            .chain(db.env())
            .map(|(k, v)| (format!("POSTDESK__{k}"), v))
            .collect();
        let settings = Settings::load_with_env(None, env).expect("test settings are valid");
        let store = Arc::new(crate::support::connect_store(&settings.database));
        let pipeline = Pipeline::new(&settings, "page-test-secret");
        PageFixture {
            settings,
            store,
            pipeline,
            now: Utc
                .with_ymd_and_hms(2025, 3, 3, 9, 0, 0)
                .single()
                .expect("a date"),
            serial: 0,
            _dir: dir,
        }
    }

    pub fn router(&self) -> Router {
        postdesk::web::router(
            Arc::clone(&self.store),
            &self.settings,
            Arc::new(ImapBoard::single("support", Arc::default())),
        )
    }

    /// The admin listener's routes (`/metrics`, `/healthz`).
    pub fn admin_router(&self) -> Router {
        postdesk::web::routers(
            Arc::clone(&self.store),
            &self.settings,
            Arc::new(ImapBoard::single("support", Arc::default())),
        )
        .1
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
        self.open_ticket_with(from, subject, body, &[], attachments)
    }

    /// `open_ticket` with extra headers (a Cc, say).
    pub fn open_ticket_with(
        &mut self,
        from: &str,
        subject: &str,
        body: &str,
        headers: &[(&str, String)],
        attachments: &[(&str, &str, &str)],
    ) -> Opened {
        let raw = self.mail(from, subject, body, headers, attachments);
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
        // Signed on the fixture's day: an agent token is good for a while.
        let token = self
            .pipeline
            .signer
            .token_on(
                TicketNumber(number),
                Purpose::Notification,
                Some(AGENT),
                IssueDay::of(self.now),
            )
            .expect("a signed token");
        let signed = format!("pd.{token}@{}", self.pipeline.domain);
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
    assert_eq!(
        token.len(),
        postdesk::tokens::LINK_TOKEN_LEN,
        "a link token (its second, 128 random bits) after {marker}"
    );
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
    send(router, Request::get(uri), headers).await
}

/// `get` from the client address `peer`, as the accept loop records it.
pub async fn get_from(
    router: &Router,
    peer: &str,
    uri: &str,
    headers: &[(header::HeaderName, &str)],
) -> Page {
    let peer: std::net::SocketAddr = peer.parse().expect("an address:port");
    let request = Request::get(uri).extension(axum::extract::ConnectInfo(peer));
    send(router, request, headers).await
}

async fn send(
    router: &Router,
    mut request: axum::http::request::Builder,
    headers: &[(header::HeaderName, &str)],
) -> Page {
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

pub fn assert_secure(page: &Page) {
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

pub fn assert_no_live_markup(html: &str) {
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
