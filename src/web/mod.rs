//! Web: the read-only status page (axum + askama). This module owns the
//! router, the shared state and what every response carries (a strict
//! Content-Security-Policy, nosniff, no referrer, no framing, no caching of
//! private pages); the routes live in `customer` (`/t/TOKEN`, `/r/TOKEN`),
//! `agent` (`/agent`) and `metrics` (`/healthz`, `/metrics`), what pages
//! show in `view` and `list`, attachment responses in `download`. On the
//! main listener `/metrics` needs the agent key; on `web.admin_listen`
//! (its own router) `/metrics` and `/healthz` are open. Connections are
//! accepted, capped and timed out in `serve` and `limits`; wrong agent
//! keys are throttled in `throttle`.
//! Everything is escaped by askama and no template marks user data safe.
//! Store reads run off the async threads, at most 8 at a time, except a
//! customer page's short read on SQLite (`read_page`). It must not
//! write to the store, and an unknown or revoked token, a ticket outside a
//! token's scope or a missing agent credential is a plain 404 that reveals
//! nothing.

mod agent;
mod customer;
mod download;
mod limits;
mod list;
mod metrics;
mod search;
mod serve;
mod smtp_health;
mod throttle;
mod view;

pub use serve::Servers;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;

use crate::imap::ImapBoard;
use crate::settings::Settings;
use crate::store::Store;

const STYLE: &str = include_str!("style.css");

/// What every handler can reach.
#[derive(Clone)]
pub struct WebState {
    store: Arc<Store>,
    /// Shown for our own messages on a customer's page (the first queue's
    /// display name; `queue_names` has every queue's).
    support_name: String,
    /// Each queue's (name, display name), the first queue first.
    queue_names: Arc<[(String, String)]>,
    /// `None` when `[web] agent_token` is empty: `/agent` is a 404.
    agent: Option<Arc<agent::AgentKey>>,
    /// Whether cookies get `Secure` (the public URL is https).
    secure_cookies: bool,
    /// Each watched mailbox's IMAP status, by queue.
    imap: Arc<ImapBoard>,
    /// When `/healthz` counts IMAP as down.
    health: metrics::HealthClock,
    /// Bounds the store reads in flight (see [`STORE_READS`]).
    reads: Arc<Semaphore>,
    /// Wrong agent keys per client address.
    guesses: Arc<throttle::GuessThrottle>,
}

/// Store reads in flight at once: as many as the store keeps reader
/// connections; more at a time would open (and close) a connection per
/// request, which under load costs more than the reads themselves.
const STORE_READS: usize = crate::store::READER_POOL;

/// The status page's routes, ready to serve (`/metrics` for agents only).
pub fn router(store: Arc<Store>, settings: &Settings, imap: Arc<ImapBoard>) -> Router {
    routers(store, settings, imap).0
}

/// The status page's routes and the admin listener's (`/metrics` and
/// `/healthz`, open), over one shared state.
pub fn routers(store: Arc<Store>, settings: &Settings, imap: Arc<ImapBoard>) -> (Router, Router) {
    let state = web_state(store, settings, imap);
    let admin = Router::new()
        .route("/healthz", get(metrics::healthz))
        .route("/metrics", get(metrics::metrics))
        .fallback(fallback)
        .layer(axum::middleware::map_response(protect))
        .with_state(state.clone());
    (page_routes(state, false), admin)
}

/// Where [`bench_router`] serves its one-read floor (`/bench/read/TOKEN`).
pub const READ_FLOOR_PATH: &str = "/bench/read/{token}";

/// The fixed body of the page benchmark's floors: 2 KB, a small page.
pub static BENCH_BODY: [u8; 2048] = [b'x'; 2048];

/// Benchmarks only: [`router`] with one more route, [`READ_FLOOR_PATH`]:
/// the ticket link's token looked up through the pages' own read path
/// (`read_page`: the same limiter and reader pool, one indexed read),
/// then [`BENCH_BODY`]. The least a page from the database can cost. The
/// daemon serves [`routers`] only, where that path is a 404.
pub fn bench_router(store: Arc<Store>, settings: &Settings, imap: Arc<ImapBoard>) -> Router {
    page_routes(web_state(store, settings, imap), true)
}

fn web_state(store: Arc<Store>, settings: &Settings, imap: Arc<ImapBoard>) -> WebState {
    WebState {
        store,
        support_name: settings.support.name.clone(),
        queue_names: settings
            .queues()
            .into_iter()
            .map(|q| (q.name, q.display_name))
            .collect(),
        agent: agent::AgentKey::new(settings.web.agent_token.expose()).map(Arc::new),
        secure_cookies: settings.support.public_url.starts_with("https://"),
        imap,
        health: health_clock(settings),
        reads: Arc::new(Semaphore::new(STORE_READS)),
        guesses: Arc::new(throttle::GuessThrottle::default()),
    }
}

/// Now, and the longest a live IMAP session goes without a look: the IDLE
/// refresh (or the poll interval where the server has no IDLE), the
/// longest of any queue's mailbox.
fn health_clock(settings: &Settings) -> metrics::HealthClock {
    let look = settings
        .queues()
        .iter()
        .map(|q| {
            let imap = &q.imap;
            if imap.idle {
                imap.idle_refresh_seconds.max(imap.poll_seconds)
            } else {
                imap.poll_seconds
            }
        })
        .max()
        .unwrap_or(0);
    metrics::HealthClock {
        started_unix: chrono::Utc::now().timestamp(),
        imap_look_seconds: i64::try_from(look).unwrap_or(i64::MAX / 2),
    }
}

fn page_routes(state: WebState, read_floor: bool) -> Router {
    let routes = Router::new();
    let routes = if read_floor {
        routes.route(READ_FLOOR_PATH, get(customer::read_floor))
    } else {
        routes
    };
    routes
        .route("/t/{token}", get(customer::ticket))
        .route(
            "/t/{token}/a/{attachment}",
            get(customer::ticket_attachment),
        )
        .route("/r/{token}", get(customer::requester_list))
        .route("/r/{token}/t/{number}", get(customer::requester_ticket))
        .route(
            "/r/{token}/t/{number}/a/{attachment}",
            get(customer::requester_attachment),
        )
        .route("/agent", get(agent::queue))
        .route("/agent/t/{number}", get(agent::ticket))
        .route("/agent/t/{number}/a/{attachment}", get(agent::attachment))
        .route("/healthz", get(metrics::healthz))
        .route("/metrics", get(metrics::metrics_for_agents))
        .route("/static/style.css", get(stylesheet))
        .fallback(fallback)
        .layer(axum::middleware::map_response(protect))
        .with_state(state)
}

/// The client's address, as the accept loop recorded it (unspecified
/// when a request did not come through it, as in tests).
pub(crate) struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(ClientIp(
            peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

impl WebState {
    /// The display name customers see for `queue` (a queue no longer
    /// configured shows the first queue's).
    fn queue_display_name(&self, queue: &str) -> String {
        let found = self.queue_names.iter().find(|(name, _)| name == queue);
        found
            .or(self.queue_names.first())
            .map_or_else(|| self.support_name.clone(), |(_, shown)| shown.clone())
    }

    /// `queue` if it is a configured queue's name (safe in a link).
    fn known_queue(&self, queue: &str) -> Option<String> {
        let names = self.queue_names.iter();
        names
            .map(|(name, _)| name)
            .find(|name| *name == queue)
            .cloned()
    }

    /// Every queue's name, the first one first, when there are several.
    fn queue_list(&self) -> Vec<String> {
        if self.queue_names.len() < 2 {
            return Vec::new();
        }
        self.queue_names
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Runs a blocking store read off the async threads. An error is logged
/// and becomes a 500 that says nothing about the cause.
async fn read_store<T, F>(state: &WebState, what: &'static str, read: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
{
    let Ok(permit) = Arc::clone(&state.reads).acquire_owned().await else {
        return Err(limiter_closed(what));
    };
    let store = Arc::clone(&state.store);
    let reading = tokio::task::spawn_blocking(move || {
        let value = read(&store);
        drop(permit);
        value
    });
    match reading.await {
        Ok(value) => logged(what, value).ok_or_else(server_error),
        Err(err) => Err(stopped(what, err)),
    }
}

/// A customer page's read (a link, its ticket or list): on SQLite it runs
/// on the async thread that serves the request, on PostgreSQL as
/// [`read_store`]. Such a read is a few index seeks (26-44 us at 100,000
/// tickets) on pages the OS holds, and costs no more than rendering what
/// it returns, which runs there anyway; handing it to a blocking thread
/// and back cost more than the read itself in wake-ups and context
/// switches (the one-read floor 28-32 against 43-48 us of CPU a request;
/// docs/performance.md, the sixteenth pass). Reads that can take long stay
/// off the async threads: search, the agents' pages, attachments,
/// metrics, and every read on PostgreSQL (a round trip to the server).
async fn read_page<T, F>(state: &WebState, what: &'static str, read: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> anyhow::Result<T> + Send + 'static,
{
    if state.store.backend() != crate::store::Backend::Sqlite {
        return read_store(state, what, read).await;
    }
    let Ok(_permit) = state.reads.acquire().await else {
        return Err(limiter_closed(what));
    };
    // A panic is a 500 here as on a blocking thread, not a dropped connection.
    let store = &state.store;
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(store))) {
        Ok(value) => logged(what, value).ok_or_else(server_error),
        Err(panic) => Err(stopped(what, crate::ingest::panic_message(panic.as_ref()))),
    }
}

/// A read's value, or `None` with its error logged (the caller answers a
/// 500 that says nothing about the cause).
fn logged<T>(what: &str, value: anyhow::Result<T>) -> Option<T> {
    value
        .map_err(|err| tracing::error!("Reading {what} failed: {err:#}"))
        .ok()
}

/// A read that panicked (on a blocking thread or here): logged, a 500.
fn stopped(what: &str, why: impl std::fmt::Display) -> Response {
    tracing::error!("Reading {what} stopped: {why}");
    server_error()
}

fn limiter_closed(what: &str) -> Response {
    tracing::error!("Reading {what} failed: the read limiter is closed");
    server_error()
}

/// A link token is 40 lower-case hex characters (`tokens::link_token`),
/// or 32 from an earlier version; anything else cannot match and is not
/// looked up.
fn is_link_token(token: &str) -> bool {
    matches!(token.len(), 32 | crate::tokens::LINK_TOKEN_LEN)
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A positive number from a path segment (ticket or attachment).
fn path_number(segment: &str) -> Option<i64> {
    segment.parse::<i64>().ok().filter(|n| *n > 0)
}

async fn stylesheet() -> Response {
    let mut response = STYLE.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundTemplate;

/// The one "not found" page: for unknown paths, tokens, tickets and
/// attachments alike.
fn not_found() -> Response {
    render(StatusCode::NOT_FOUND, &NotFoundTemplate)
}

async fn fallback() -> Response {
    not_found()
}

fn server_error() -> Response {
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong. Please try again later.",
    )
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    render_sized(status, template, 0)
}

/// Headers an HTML page ends up with: its type and those of [`protect`].
const PAGE_HEADERS: usize = 8;

/// [`render`] into room for `bytes` of HTML from the start (a long page
/// is then not copied as it grows), its headers' room made once.
fn render_sized<T: Template>(status: StatusCode, template: &T, bytes: usize) -> Response {
    let mut html = String::new();
    let _ = html.try_reserve(bytes.max(T::SIZE_HINT));
    match template.render_into(&mut html) {
        Ok(()) => {
            let mut response = Response::new(axum::body::Body::from(html));
            *response.status_mut() = status;
            let mut headers = HeaderMap::with_capacity(PAGE_HEADERS);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            *response.headers_mut() = headers;
            response
        }
        Err(err) => {
            tracing::error!("A page template failed: {err}");
            server_error()
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The policy of every HTML page: no script at all, the one stylesheet
/// from our own origin, no forms, no framing, no plugins.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; base-uri 'none'; \
                           form-action 'none'; frame-ancestors 'none'";

/// Headers every response carries (a handler may set a stricter policy or
/// its own caching first; those are kept).
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    keep_or_set(headers, header::CONTENT_SECURITY_POLICY, PAGE_POLICY);
    keep_or_set(headers, header::CACHE_CONTROL, "no-store");
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn keep_or_set(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers
        .entry(name)
        .or_insert_with(|| HeaderValue::from_static(value));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TicketNumber;

    /// A desk with an empty database in a temporary directory (kept while
    /// the directory lives).
    fn empty_desk() -> (tempfile::TempDir, Settings, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![(
            "POSTDESK__SUPPORT__ADDRESS".to_string(),
            "tickets@support.test".to_string(),
        )];
        let settings = Settings::load_with_env(None, env).unwrap();
        let store = Arc::new(Store::open(&dir.path().join("t.db")).unwrap());
        (dir, settings, store)
    }

    #[test]
    fn only_well_formed_link_tokens_are_looked_up() {
        assert!(is_link_token("0123456789abcdef0123456789abcdef"));
        assert!(is_link_token("6b49d2000123456789abcdef0123456789abcdef"));
        assert!(!is_link_token("6b49d2000123456789abcdef0123456789abcde"));
        assert!(!is_link_token("0123456789ABCDEF0123456789ABCDEF"));
        assert!(!is_link_token("0123456789abcdef"));
        assert!(!is_link_token("../../../../etc/passwd/0123456789"));
        assert_eq!(path_number("42"), Some(42));
        assert_eq!(path_number("0"), None);
        assert_eq!(path_number("-3"), None);
        assert_eq!(path_number("1; DROP"), None);
    }

    /// The one-read floor answers on the benchmark's router only: the
    /// daemon's router knows no `/bench/` path, even for a live link.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_read_floor_is_served_by_the_bench_router_only() {
        use axum::body::Body;
        use axum::http::Request;
        use tower::ServiceExt;

        let (_dir, settings, store) = empty_desk();
        let pipeline = crate::ingest::Pipeline::new(&settings, "unit-secret-unit-secret");
        let mail = "From: ann@customer.test\r\nTo: tickets@support.test\r\nSubject: Hi\r\n\
                    Message-ID: <floor@customer.test>\r\n\r\nHello.\r\n";
        let source = crate::store::MailSource::Pipe;
        let now = chrono::Utc::now();
        store
            .ingest_mail(&pipeline, mail.as_bytes().to_vec(), &source, now)
            .unwrap();
        let detail = store.ticket_detail(TicketNumber(1)).unwrap().unwrap();
        let token: String = detail
            .messages
            .iter()
            .find_map(|m| m.text.split("/t/").nth(1))
            .map(|rest| rest.chars().take_while(char::is_ascii_hexdigit).collect())
            .unwrap();
        let path = READ_FLOOR_PATH.replace("{token}", &token);
        let status = |router: Router, path: String| async move {
            let request = Request::get(path).body(Body::empty()).unwrap();
            router.oneshot(request).await.unwrap().status()
        };
        let imap = Arc::new(ImapBoard::default());
        let daemon = router(Arc::clone(&store), &settings, Arc::clone(&imap));
        assert_eq!(
            status(daemon.clone(), format!("/t/{token}")).await,
            StatusCode::OK
        );
        assert_eq!(status(daemon, path.clone()).await, StatusCode::NOT_FOUND);
        let bench = bench_router(store, &settings, imap);
        assert_eq!(status(bench.clone(), path).await, StatusCode::OK);
        let unknown = READ_FLOOR_PATH.replace("{token}", &"0".repeat(32));
        assert_eq!(status(bench, unknown).await, StatusCode::NOT_FOUND);
    }

    /// A customer page's read on SQLite runs on the thread serving the
    /// request; on PostgreSQL (the unit tests' second run), and every
    /// other read on either, on a blocking thread; a failed or panicking
    /// read of either kind is a 500 that says nothing of its cause.
    #[tokio::test(flavor = "current_thread")]
    async fn a_page_read_stays_on_the_serving_thread_on_sqlite_only_and_other_reads_hop() {
        let (_dir, settings, store) = empty_desk();
        let sqlite = store.backend() == crate::store::Backend::Sqlite;
        let state = web_state(store, &settings, Arc::new(ImapBoard::default()));
        let serving = std::thread::current().id();
        let thread = |_: &Store| Ok(std::thread::current().id());
        let page = read_page(&state, "a page", thread).await.unwrap();
        assert_eq!(
            page == serving,
            sqlite,
            "a page read on the serving thread: {}",
            page == serving
        );
        let other = read_store(&state, "a search", thread).await.unwrap();
        assert_ne!(other, serving, "a long read ran on the serving thread");

        let secret = || anyhow::anyhow!("disk I/O error at /var/lib/secret.db");
        let panics = |_: &Store| -> anyhow::Result<()> { panic!("a secret row") };
        for failed in [
            read_page(&state, "a page", move |_| -> anyhow::Result<()> {
                Err(secret())
            })
            .await,
            read_store(&state, "a search", move |_| -> anyhow::Result<()> {
                Err(secret())
            })
            .await,
            read_page(&state, "a page", panics).await,
            read_store(&state, "a search", panics).await,
        ] {
            let response = failed.expect_err("a failed read is an error page");
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&body);
            assert!(!body.contains("secret"), "the cause leaked: {body}");
        }
        assert_eq!(state.reads.available_permits(), STORE_READS);
    }
}
