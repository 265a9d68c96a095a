//! The status page in a real headless Chromium, driven over WebDriver
//! (fantoccini, plain HTTP to the chromedriver that `scripts/test` starts
//! and names in `CHROMEDRIVER_URL`). A customer opens their requester link,
//! reads the rows and the filter counts, clicks a filter, opens a ticket
//! and unfolds a quote; HTML and script in a subject, a display name, a
//! body and a file name show as text and never run. An agent signs in
//! with `?key=` once and reads the queue and a ticket in full.
//! Screenshots (desktop and phone width) go to `target/screenshots/`.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::page::{
    AGENT_KEY, BODY_PAYLOAD, Conversation, FILE_PAYLOAD, NAME_PAYLOAD, PageFixture,
    SUBJECT_PAYLOAD, conversation,
};

const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromedriver (scripts/test starts it)"]
async fn a_customer_reads_their_tickets_in_a_real_browser_and_no_payload_runs() {
    let driver = std::env::var("CHROMEDRIVER_URL").unwrap_or_else(|_| {
        panic!(
            "CHROMEDRIVER_URL is not set: run the tests through scripts/test, or start \
             `chromedriver --port=9515` and set CHROMEDRIVER_URL=http://127.0.0.1:9515"
        )
    });
    let mut fx = PageFixture::new(Some(AGENT_KEY));
    let c = conversation(&mut fx);
    let ann_from = format!("\"{NAME_PAYLOAD}\" <ann@customer.test>");
    let invoice = fx.open_ticket(&ann_from, "Invoice copy", "Please send it again.", &[]);
    let password = fx.open_ticket(&ann_from, "Password reset", "It never arrives.", &[]);
    fx.agent_mail(invoice.number, "#resolve", &[]);
    let expected_rows = vec![
        "Invoice copy".to_string(),
        "Password reset".to_string(),
        SUBJECT_PAYLOAD.to_string(),
    ];

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    let server = tokio::spawn(axum::serve(listener, fx.router()).into_future());

    let client = connect(&driver).await;
    let walk = Walk {
        client: &client,
        base: &base,
        conversation: &c,
        expected_rows,
        password_number: password.number,
    };
    let outcome = AssertUnwindSafe(walk.run()).catch_unwind().await;
    // The browser is closed whatever happened, so no Chromium is left over.
    let _ = client.close().await;
    server.abort();
    match outcome {
        Ok(shots) => {
            for shot in shots {
                eprintln!("screenshot: {}", shot.display());
            }
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

pub(crate) async fn connect(driver: &str) -> Client {
    let mut options = json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
        ]
    });
    if let Ok(binary) = std::env::var("CHROME_BIN") {
        options["binary"] = Value::String(binary);
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver)
        .await
        .unwrap_or_else(|e| panic!("cannot start a Chromium session at {driver}: {e}"))
}

struct Walk<'a> {
    client: &'a Client,
    base: &'a str,
    conversation: &'a Conversation,
    expected_rows: Vec<String>,
    password_number: i64,
}

impl Walk<'_> {
    async fn run(self) -> Vec<PathBuf> {
        let mut shots = Vec::new();
        let ann = &self.conversation.ann;
        let list_url = format!("{}/r/{}", self.base, ann.requester_token);
        self.size(DESKTOP).await;
        self.client.goto(&list_url).await.expect("the list opens");

        assert_eq!(
            self.row_subjects().await,
            self.expected_rows,
            "newest first"
        );
        assert_eq!(
            self.tab_texts().await,
            vec![
                "All (3)".to_string(),
                "Open or pending (2)".to_string(),
                "Resolved or closed (1)".to_string()
            ]
        );
        assert!(
            !self.text("main").await.contains("Bob"),
            "only Ann's tickets"
        );
        self.assert_styled_and_clean("Your requests").await;
        shots.push(self.shot("requester-list").await);

        self.click(".tabs a[href='?filter=closed']").await;
        assert!(self.url().await.ends_with("?filter=closed"));
        assert_eq!(self.row_subjects().await, vec!["Invoice copy".to_string()]);
        let current = self
            .client
            .find(Locator::Css(".tabs a[aria-current='page']"))
            .await
            .expect("a current tab");
        assert_eq!(
            current.text().await.expect("text"),
            "Resolved or closed (1)"
        );
        assert!(self.text("tbody").await.contains("Resolved"));
        shots.push(self.shot("requester-filter-resolved").await);

        self.click(".tabs a[href='?filter=open']").await;
        assert_eq!(self.row_subjects().await.len(), 2);
        self.click(".tabs a[href='?filter=all']").await;

        // Open the ticket whose subject is a script.
        self.click(&format!("tbody a[href$='/t/{}']", ann.number))
            .await;
        assert_eq!(
            self.text("h1").await,
            SUBJECT_PAYLOAD,
            "the subject as text"
        );
        let senders = self.texts(".message .sender").await;
        assert_eq!(senders[0], NAME_PAYLOAD, "the display name as text");
        assert!(senders.contains(&"Alice Agent".to_string()));
        let bodies = self.texts(".message > article > .text").await;
        assert_eq!(bodies[0], BODY_PAYLOAD, "the body as text");
        assert_eq!(
            self.texts(".attachments a").await,
            vec![FILE_PAYLOAD.to_string()]
        );
        let main = self.text("main").await;
        for hidden in [
            "customer sounds upset",
            "out of the office",
            "agent@example.test",
        ] {
            assert!(!main.contains(hidden), "{hidden:?} is not for customers");
        }
        self.assert_styled_and_clean(&format!("Ticket #{}: {SUBJECT_PAYLOAD}", ann.number))
            .await;
        shots.push(self.shot("ticket").await);

        // The quote is folded, and unfolds without JavaScript.
        let quoted = self
            .client
            .find(Locator::Css("details.quoted .text"))
            .await
            .expect("a quote");
        assert!(!quoted.is_displayed().await.expect("visibility"));
        self.click("details.quoted summary").await;
        assert!(quoted.is_displayed().await.expect("visibility"));
        assert!(quoted.text().await.expect("text").contains("> It smokes."));
        shots.push(self.shot("ticket-quote-open").await);

        // The same pages at phone width: nothing wider than the screen.
        self.size(PHONE).await;
        self.client.goto(&list_url).await.expect("the list opens");
        self.assert_fits_the_width().await;
        shots.push(self.shot("phone-requester-list").await);
        let ticket_url = format!("{}/t/{}", self.base, ann.ticket_token);
        self.client
            .goto(&ticket_url)
            .await
            .expect("the ticket opens");
        self.assert_fits_the_width().await;
        self.assert_styled_and_clean(&format!("Ticket #{}: {SUBJECT_PAYLOAD}", ann.number))
            .await;
        shots.push(self.shot("phone-ticket").await);

        let other = format!("{list_url}/t/{}", self.password_number);
        self.client.goto(&other).await.expect("a ticket opens");
        assert_eq!(self.text("h1").await, "Password reset");

        // Agents: ?key= once, then the HttpOnly cookie carries on.
        self.size(DESKTOP).await;
        let queue = format!("{}/agent", self.base);
        self.client
            .goto(&format!("{queue}?key={AGENT_KEY}"))
            .await
            .expect("sign in");
        for _ in 0..50 {
            if self.url().await == queue {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(self.url().await, queue, "the key leaves the address bar");
        assert_eq!(self.row_subjects().await.len(), 4, "every ticket");
        let cookies = self
            .client
            .execute("return document.cookie;", vec![])
            .await
            .expect("a script from WebDriver runs");
        assert_eq!(cookies, "", "the agent cookie is HttpOnly");
        self.assert_styled_and_clean("Queue").await;
        shots.push(self.shot("agent-queue").await);
        self.click(&format!("tbody a[href='/agent/t/{}']", ann.number))
            .await;
        let main = self.text("main").await;
        for shown in ["Internal note", "customer sounds upset", "Auto-reply"] {
            assert!(main.contains(shown), "agents see {shown:?}");
        }
        shots.push(self.shot("agent-ticket").await);
        shots
    }

    async fn size(&self, (width, height): (u32, u32)) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("the window resizes");
    }

    async fn url(&self) -> String {
        self.client.current_url().await.expect("a URL").to_string()
    }

    async fn click(&self, css: &str) {
        let before = self.url().await;
        let target = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing matches {css}: {e}"));
        target.click().await.expect("a click");
        let is_link = target.tag_name().await.map(|t| t == "a").unwrap_or(false);
        if is_link {
            // Wait (bounded) for the navigation the link starts.
            for _ in 0..50 {
                if self.url().await != before {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("main"))
            .await
            .expect("the page is there");
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("nothing matches {css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for element in self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("a search")
        {
            out.push(element.text().await.expect("text"));
        }
        out
    }

    async fn row_subjects(&self) -> Vec<String> {
        self.texts("table.tickets tbody tr th a").await
    }

    async fn tab_texts(&self) -> Vec<String> {
        self.texts(".tabs a").await
    }

    /// The stylesheet applied (CSP let it through) and nothing injected
    /// ran or was created: no script, image, svg or frame, no alert.
    async fn assert_styled_and_clean(&self, title: &str) {
        let state = self
            .client
            .execute(
                "return {
                    pwned: typeof window.__pwned,
                    injected: document.querySelectorAll('script, img, svg, iframe, object, embed').length,
                    title: document.title,
                    styled: document.styleSheets.length === 1
                        && getComputedStyle(document.querySelector('main')).maxWidth !== 'none',
                };",
                vec![],
            )
            .await
            .expect("a script from WebDriver runs");
        assert_eq!(state["pwned"], "undefined", "no payload ran: {state}");
        assert_eq!(state["injected"], 0, "no element was injected: {state}");
        assert_eq!(state["title"], title, "{state}");
        assert_eq!(state["styled"], true, "the stylesheet applies: {state}");
        assert!(
            self.client.get_alert_text().await.is_err(),
            "no alert is open"
        );
    }

    async fn assert_fits_the_width(&self) {
        let fits = self
            .client
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .expect("a script from WebDriver runs");
        assert_eq!(fits, true, "the page fits a phone's width");
    }

    /// A screenshot of the whole page at the current width: the window is
    /// made as tall as the page (plus whatever the window's frame takes).
    async fn shot(&self, name: &str) -> PathBuf {
        let (width, _) = self
            .client
            .get_window_size()
            .await
            .expect("the window size");
        let width = u32::try_from(width).unwrap_or(DESKTOP.0);
        let page_height = self
            .number("return document.documentElement.scrollHeight;")
            .await;
        let wanted = page_height.clamp(600, 6000);
        self.size((width, wanted)).await;
        let inner = self.number("return window.innerHeight;").await;
        if inner < wanted {
            self.size((width, wanted + (wanted - inner))).await;
        }
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("the screenshot is saved");
        path
    }

    async fn number(&self, script: &str) -> u32 {
        self.client
            .execute(script, vec![])
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(900)
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("screenshots")
}
