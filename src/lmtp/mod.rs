//! LMTP: the server the MTA delivers to (RFC 2033), on TCP
//! (`[lmtp] listen = "127.0.0.1:2424"`) or a unix socket
//! (`"unix:/run/postdesk/lmtp.sock"`). The accept loop follows mini-redis
//! `server.rs` and `web/serve.rs`: one task per connection under a cap,
//! backoff on a failed accept, shutdown passed in. The protocol is a pure
//! state machine (`protocol`, `data`); `session` does the I/O and hands
//! each message to the intake seam; `budget` bounds the messages held in
//! memory across connections. It must not parse mail or touch the database
//! itself.

mod budget;
mod data;
mod protocol;
mod session;

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use budget::{DATA_DEADLINE, DATA_SLOTS, DataBudget, SLOT_WAIT};
pub use data::{DataReader, DataStep};
pub use protocol::{MAX_RECIPIENTS, Protocol, Step};

use crate::ingest::Pipeline;
use crate::settings::Settings;
use crate::store::Store;

/// Connections served at once; more wait in the kernel's backlog. Postfix
/// opens at most 20 per destination by default. Only [`DATA_SLOTS`] of them
/// read a message at a time.
pub const MAX_CONNECTIONS: usize = 64;
/// The shortest and longest pause after a failed accept.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_secs(1));

/// What every connection needs.
pub struct Context {
    pub store: Arc<Store>,
    pub pipeline: Arc<Pipeline>,
    pub settings: Arc<Settings>,
    /// Nudged after a stored mail queued something to send.
    pub outbox_wake: Arc<Notify>,
    /// This server's name in the greeting (the support address's domain).
    pub host: String,
}

/// A bound LMTP listener.
pub enum Listener {
    Tcp(TcpListener),
    /// The socket's path, removed again when the server stops.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `listen` (`HOST:PORT` or `unix:PATH`). A stale socket file at
    /// PATH is removed first; one a live server answers on is an error.
    pub async fn bind(listen: &str) -> anyhow::Result<Listener> {
        match listen.strip_prefix("unix:") {
            Some(path) => bind_unix(Path::new(path)).await,
            None => {
                let tcp = TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on lmtp.listen = {listen}"))?;
                Ok(Listener::Tcp(tcp))
            }
        }
    }

    /// The TCP address (with port 0, the one the system chose).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(tcp) => tcp.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// Where it listens, for the log.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(tcp) => tcp
                .local_addr()
                .map_or_else(|_| "TCP".to_string(), |a| a.to_string()),
            Listener::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

async fn bind_unix(path: &Path) -> anyhow::Result<Listener> {
    let shown = path.display();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!("lmtp.listen = unix:{shown}: the path exists and is not a socket");
        }
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            anyhow::bail!("lmtp.listen = unix:{shown}: another server answers on this socket");
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {shown}"))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on lmtp.listen = unix:{shown}"))?;
    // The MTA's group may connect; nobody else. The group is the one the
    // socket got at bind: in a setgid directory of the MTA's group (Debian:
    // /var/spool/postfix/postdesk, 2750 postdesk:postfix) that is the MTA's,
    // without postdesk being in it or chown'ing anything.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set mode 0660 on {shown}"))?;
    Ok(Listener::Unix(listener, path.to_path_buf()))
}

/// Serves LMTP on `listener` until `shutdown`; then lets the messages in
/// hand finish (the caller bounds how long it waits).
pub async fn run(listener: Listener, ctx: Arc<Context>, shutdown: CancellationToken) {
    tracing::info!("LMTP is served on {}.", listener.describe());
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let budget = DataBudget::standard();
    let connections = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    loop {
        // Waits (not accepting) while every slot is busy.
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(stream) => {
                backoff = ACCEPT_BACKOFF.0;
                let (ctx, shutdown) = (Arc::clone(&ctx), shutdown.clone());
                let budget = Arc::clone(&budget);
                connections.spawn(async move {
                    if let Err(err) = stream.serve(ctx, budget, shutdown).await {
                        tracing::debug!("An LMTP connection ended: {err}");
                    }
                    drop(slot);
                });
            }
            Err(err) if is_resource_shortage(&err) => {
                tracing::warn!("Accepting an LMTP connection failed ({err}); pausing {backoff:?}.");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
            }
            Err(err) => tracing::debug!("An LMTP connection was lost while accepting it: {err}"),
        }
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// An accepted connection of either kind.
enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Stream {
    async fn serve(
        self,
        ctx: Arc<Context>,
        budget: Arc<DataBudget>,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        match self {
            Stream::Tcp(tcp) => {
                let _ = tcp.set_nodelay(true);
                session::serve(tcp, ctx, budget, shutdown).await
            }
            Stream::Unix(unix) => session::serve(unix, ctx, budget, shutdown).await,
        }
    }
}

async fn accept(listener: &Listener) -> io::Result<Stream> {
    match listener {
        Listener::Tcp(tcp) => tcp.accept().await.map(|(s, _)| Stream::Tcp(s)),
        Listener::Unix(unix, _) => unix.accept().await.map(|(s, _)| Stream::Unix(s)),
    }
}

/// Failures of `accept` that repeat at once if retried at once.
fn is_resource_shortage(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_unix_socket_replaces_a_stale_one_with_mode_0660_and_nothing_else() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("lmtp.sock");
        let listen = format!("unix:{}", path.display());
        // A socket left by a dead process: the file stays, nobody answers.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("a stale socket"));
        let live = Listener::bind(&listen)
            .await
            .expect("the stale socket is replaced");
        let mode = std::fs::metadata(&path)
            .expect("the socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);
        // A live one is not taken over.
        let err = Listener::bind(&listen).await.err().expect("refused");
        assert!(err.to_string().contains("another server answers"), "{err}");
        drop(live);
        // Nor is a file that is not a socket removed.
        let file = dir.path().join("not-a-socket");
        std::fs::write(&file, "keep me").expect("a file");
        let err = Listener::bind(&format!("unix:{}", file.display()))
            .await
            .err();
        assert!(err.is_some_and(|e| e.to_string().contains("not a socket")));
        assert_eq!(std::fs::read_to_string(&file).expect("kept"), "keep me");
    }

    #[tokio::test]
    async fn a_socket_in_a_setgid_directory_gets_the_directory_group() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("a temp dir");
        let spool = dir.path().join("postdesk");
        std::fs::create_dir(&spool).expect("the socket's directory");
        let own_group = std::fs::metadata(&spool).expect("the directory").gid();
        // As root (the test machines), a group this process is not in, as
        // `postfix` is not postdesk's; otherwise only the setgid path runs.
        let nogroup = 65534;
        let group = match std::os::unix::fs::chown(&spool, None, Some(nogroup)) {
            Ok(()) => nogroup,
            Err(_) => own_group,
        };
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o2750)).expect("setgid");
        let path = spool.join("lmtp.sock");
        let live = Listener::bind(&format!("unix:{}", path.display()))
            .await
            .expect("bound");
        let socket = std::fs::metadata(&path).expect("the socket");
        assert_eq!(socket.gid(), group, "the directory's group, not ours");
        assert_eq!(socket.permissions().mode() & 0o777, 0o660);
        drop(live);
    }
}
