//! The web listeners' accept loop, after mini-redis `server.rs`: one task
//! per connection, a registry that caps them below the file limit, and a
//! watchdog per connection that closes it when its phase overstays (idle,
//! headers, a request); graceful shutdown on a passed-in token. It owns
//! sockets and timing only; what a request gets is the Router's business.
//!
//! hyper's own `header_read_timeout` is not used: since hyper 1.4 it also
//! runs while a keep-alive connection waits for its next request, so the
//! idle timeout could never exceed it. Every deadline is ours instead.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::limits::{
    ADMIN_CONNECTIONS, Activity, Phase, REQUEST_SECONDS, RESERVED_DESCRIPTORS, Registry, Slot,
    Timeouts, connection_cap, raise_file_limit,
};
use crate::imap::ImapBoard;
use crate::settings::{Settings, WebSettings};
use crate::store::Store;

/// The shortest and longest pause after a failed accept (EMFILE, ENFILE,
/// ENOBUFS…): long enough not to spin, short enough to recover quickly.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_secs(1));

/// The bound web listeners: the status page, and `/metrics` with
/// `/healthz` on `web.admin_listen` when it is set.
pub struct Servers {
    main: TcpListener,
    admin: Option<TcpListener>,
}

impl Servers {
    pub async fn bind(web: &WebSettings) -> anyhow::Result<Servers> {
        use anyhow::Context as _;
        let main = TcpListener::bind(&web.listen)
            .await
            .with_context(|| format!("cannot listen on web.listen = {}", web.listen))?;
        let admin = if web.admin_listen.is_empty() {
            None
        } else {
            let admin = TcpListener::bind(&web.admin_listen)
                .await
                .with_context(|| {
                    format!("cannot listen on web.admin_listen = {}", web.admin_listen)
                })?;
            Some(admin)
        };
        Ok(Servers { main, admin })
    }

    /// The status page's address.
    pub fn addr(&self) -> io::Result<SocketAddr> {
        self.main.local_addr()
    }

    /// The admin listener's address, if there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves both listeners until `shutdown`, after raising the open-file
    /// limit and fitting the connection cap under it.
    pub async fn serve(
        self,
        store: Arc<Store>,
        settings: &Settings,
        imap: Arc<ImapBoard>,
        shutdown: CancellationToken,
    ) {
        let (cap, timeouts) = limits_of(&settings.web);
        let (main, admin) = super::routers(store, settings, imap);
        let main = run(self.main, main, cap, timeouts, shutdown.clone());
        match self.admin {
            Some(listener) => {
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!("Metrics and health are served on http://{addr}.");
                }
                let admin = run(listener, admin, ADMIN_CONNECTIONS, timeouts, shutdown);
                tokio::join!(main, admin);
            }
            None => main.await,
        }
    }

    /// Serves `router` alone on the main listener, through the same accept
    /// loop, cap and timeouts as [`Servers::serve`]. For benchmarks that
    /// put a route of their own beside the pages (the page benchmark's
    /// bare route); the daemon itself serves only [`Servers::serve`].
    pub async fn serve_router(
        self,
        router: Router,
        web: &WebSettings,
        shutdown: CancellationToken,
    ) {
        let (cap, timeouts) = limits_of(web);
        run(self.main, router, cap, timeouts, shutdown).await;
    }
}

/// The main listener's connection cap (after raising the open-file limit)
/// and every connection's deadlines.
fn limits_of(web: &WebSettings) -> (usize, Timeouts) {
    let file_limit = raise_file_limit();
    let cap = connection_cap(web.max_connections, file_limit);
    tracing::info!(
        "The status page takes at most {cap} connections (web.max_connections = {}, \
         open-file limit {}, {RESERVED_DESCRIPTORS} descriptors kept for mail and the database).",
        web.max_connections,
        file_limit.map_or_else(|| "unknown".to_string(), |l| l.to_string()),
    );
    let timeouts = Timeouts {
        header: Duration::from_secs(web.header_timeout_seconds),
        idle: Duration::from_secs(web.idle_timeout_seconds),
        request: Duration::from_secs(REQUEST_SECONDS),
    };
    (cap, timeouts)
}

/// Serves `router` on `listener` until `shutdown`, with at most `cap`
/// connections; then lets the requests in hand finish (the caller bounds
/// how long it waits).
pub async fn run(
    listener: TcpListener,
    router: Router,
    cap: usize,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let registry = Registry::new(cap);
    let connections = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF.0;
                accepted
            }
            Err(err) if is_resource_shortage(&err) => {
                tracing::warn!("Accepting a web connection failed ({err}); pausing {backoff:?}.");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
            // The client gave up before we took it (ECONNABORTED…).
            Err(err) => {
                tracing::debug!("A web connection was lost while accepting it: {err}");
                continue;
            }
        };
        // Waits (not accepting) while every slot is busy answering.
        let Some(slot) = registry.admit(&shutdown).await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            peer,
            router.clone(),
            slot,
            timeouts,
            shutdown.clone(),
        ));
    }
    // New clients are refused from here; those connected finish.
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Failures of `accept` that say the process or system is short of
/// something, and that repeat at once if retried at once.
fn is_resource_shortage(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// One connection: HTTP/1.1 with keep-alive, under its watchdog.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    slot: Slot,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let activity = Arc::clone(&slot.activity);
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let requests = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = requests.begin_request();
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(busy);
            response
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(served);
    let mut draining = false;
    loop {
        let deadline = activity.phase().deadline(&timeouts);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!("A web connection from {peer} ended: {err}");
                }
                break;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if activity.phase().deadline(&timeouts) <= tokio::time::Instant::now() {
                    tracing::debug!("Closing a web connection from {peer}: {:?} for too long.", activity.phase());
                    break;
                }
            }
            // A shed connection whose headers completed meanwhile finishes
            // that request first (its end notifies again).
            _ = activity.changed.notified() => {
                if activity.is_shed() && !matches!(activity.phase(), Phase::InFlight(_)) {
                    tracing::debug!("Closing an idle web connection from {peer} to admit a new one.");
                    break;
                }
            }
            // A request being answered finishes; a connection idle or
            // still sending headers has nothing to finish.
            _ = shutdown.cancelled(), if !draining => {
                if !matches!(activity.phase(), Phase::InFlight(_)) {
                    break;
                }
                served.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
    // Dropping `served` closes the socket; dropping `slot` frees its place.
    drop(slot);
}

/// The socket, telling its connection's activity what moves through it.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
