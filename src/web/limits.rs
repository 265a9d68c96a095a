//! Connection limits of the web listeners: how many connections the
//! process can afford (the file limit, raised to its hard ceiling, minus
//! descriptors kept for IMAP, SMTP, the database, its WAL and the
//! journal), what phase each live connection is in and when that phase
//! must end, and which idle connection to shed when every slot is taken.
//! It owns no socket and serves nothing: `serve` drives it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Descriptors never given to web clients: IMAP, SMTP, the database with
/// its WAL and shared memory, the reader pool, the sent journal, the
/// runtime's own, stdio.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Connections the admin listener (`/metrics`, `/healthz`) may hold; taken
/// from the file budget before the main listener's share.
pub const ADMIN_CONNECTIONS: usize = 8;

/// How long one request may run once its headers are in.
pub const REQUEST_SECONDS: u64 = 30;

/// Timeouts of every connection on one listener.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the first byte of a request to its complete headers (and for
    /// any bytes a client still drips after its response).
    pub header: Duration,
    /// A keep-alive connection with nothing to do.
    pub idle: Duration,
    /// A request being answered.
    pub request: Duration,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft
/// limit in force afterwards (`None` if it cannot be read).
pub fn raise_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            tracing::warn!(
                "Could not raise the open-file limit from {} to {}: {}",
                limit.rlim_cur,
                limit.rlim_max,
                std::io::Error::last_os_error()
            );
        }
    }
    Some(limit.rlim_cur)
}

/// The main listener's connection cap: `configured`, but never more than
/// the file limit leaves after the reserve and the admin listener's share
/// (at least 1, so a tiny limit degrades rather than refuses everything).
pub fn connection_cap(configured: usize, file_limit: Option<u64>) -> usize {
    let Some(limit) = file_limit else {
        return configured.max(1);
    };
    let spare = limit
        .saturating_sub(RESERVED_DESCRIPTORS)
        .saturating_sub(ADMIN_CONNECTIONS as u64);
    let spare = usize::try_from(spare).unwrap_or(usize::MAX);
    configured.min(spare).max(1)
}

/// What a connection is doing, since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Between requests (or writing out a finished response).
    Idle(Instant),
    /// Bytes of a request arrived; its headers are not complete yet.
    Headers(Instant),
    /// Its handler is running.
    InFlight(Instant),
}

impl Phase {
    /// When the connection must be closed if it is still in this phase.
    pub fn deadline(self, timeouts: &Timeouts) -> Instant {
        match self {
            Phase::Idle(since) => since + timeouts.idle,
            Phase::Headers(since) => since + timeouts.header,
            Phase::InFlight(since) => since + timeouts.request,
        }
    }
}

/// One connection's phase, shared by its socket, its service and the
/// registry.
#[derive(Debug)]
pub struct Activity {
    phase: Mutex<Phase>,
    /// Wakes the connection's watchdog when its deadline may have moved
    /// earlier or it is asked to go.
    pub changed: Notify,
    shed: AtomicBool,
}

impl Activity {
    /// A new connection owes its first request's headers from the start:
    /// one that never sends a byte gets the header timeout, not the idle one.
    fn new(now: Instant) -> Activity {
        Activity {
            phase: Mutex::new(Phase::Headers(now)),
            changed: Notify::new(),
            shed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn phase(&self) -> Phase {
        *self.lock()
    }

    /// Bytes came in: an idle connection starts a request's headers.
    pub fn on_read(&self) {
        let mut phase = self.lock();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Headers(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// Bytes went out: a response being written keeps its connection.
    pub fn on_write(&self) {
        let mut phase = self.lock();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Idle(Instant::now());
        }
    }

    /// A request's headers are complete; idle again when the guard drops.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        *self.lock() = Phase::InFlight(Instant::now());
        self.changed.notify_one();
        RequestGuard(Arc::clone(self))
    }

    pub fn is_shed(&self) -> bool {
        self.shed.load(Ordering::Acquire)
    }
}

/// Marks the end of a handler (answered, failed or dropped).
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.lock() = Phase::Idle(Instant::now());
        self.0.changed.notify_one();
    }
}

/// The live connections of one listener and the permits that cap them.
pub struct Registry {
    permits: Arc<Semaphore>,
    live: Mutex<HashMap<u64, Arc<Activity>>>,
    next_id: AtomicU64,
}

/// A connection's place in the registry; frees it on drop.
pub struct Slot {
    id: u64,
    pub activity: Arc<Activity>,
    registry: Arc<Registry>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.live().remove(&self.id);
    }
}

impl Registry {
    pub fn new(cap: usize) -> Arc<Registry> {
        Arc::new(Registry {
            permits: Arc::new(Semaphore::new(cap)),
            live: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    fn live(&self) -> MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection just accepted. When every slot is taken,
    /// the connection idle the longest (or stuck the longest in its
    /// headers) is asked to close and this waits for its slot; if every
    /// connection is busy answering, this waits for one to finish while
    /// further clients queue in the kernel's backlog (nothing is accepted
    /// meanwhile). `None` on shutdown.
    pub async fn admit(self: &Arc<Self>, shutdown: &CancellationToken) -> Option<Slot> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.shed_idlest();
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    permit = Arc::clone(&self.permits).acquire_owned() => permit.ok()?,
                }
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::new(Instant::now()));
        self.live().insert(id, Arc::clone(&activity));
        Some(Slot {
            id,
            activity,
            registry: Arc::clone(self),
            _permit: permit,
        })
    }

    /// Asks the longest-waiting connection that is not being answered to
    /// close; whether there was one.
    fn shed_idlest(&self) -> bool {
        let live = self.live();
        let idlest = live
            .values()
            .filter(|a| !a.is_shed())
            .filter_map(|a| match a.phase() {
                Phase::Idle(since) | Phase::Headers(since) => Some((since, a)),
                Phase::InFlight(_) => None,
            })
            .min_by_key(|(since, _)| *since);
        match idlest {
            Some((_, activity)) => {
                activity.shed.store(true, Ordering::Release);
                activity.changed.notify_one();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_descriptors_in_reserve() {
        assert_eq!(connection_cap(512, Some(1024)), 512);
        assert_eq!(connection_cap(512, Some(200)), 200 - 64 - 8);
        assert_eq!(connection_cap(20, Some(200)), 20);
        assert_eq!(connection_cap(512, Some(50)), 1);
        assert_eq!(connection_cap(512, None), 512);
        assert_eq!(connection_cap(512, Some(u64::MAX)), 512);
    }

    #[tokio::test(start_paused = true)]
    async fn each_phase_has_its_own_deadline() {
        let timeouts = Timeouts {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            request: Duration::from_secs(30),
        };
        let start = Instant::now();
        let activity = Arc::new(Activity::new(start));
        assert_eq!(
            activity.phase().deadline(&timeouts),
            start + timeouts.header,
            "a new connection owes its headers"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        activity.on_read();
        let headers_from = start;
        assert_eq!(activity.phase(), Phase::Headers(headers_from));
        tokio::time::advance(Duration::from_secs(4)).await;
        activity.on_read();
        assert_eq!(
            activity.phase().deadline(&timeouts),
            headers_from + timeouts.header,
            "more bytes of the same headers do not extend their time"
        );
        let guard = activity.begin_request();
        assert!(matches!(activity.phase(), Phase::InFlight(_)));
        activity.on_read();
        assert!(
            matches!(activity.phase(), Phase::InFlight(_)),
            "a body is read in flight"
        );
        drop(guard);
        assert!(matches!(activity.phase(), Phase::Idle(_)));
        activity.on_read();
        assert!(
            matches!(activity.phase(), Phase::Headers(_)),
            "bytes dripped after the answer get the header time, no more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_registry_sheds_the_idlest_connection_not_a_busy_one() {
        let registry = Registry::new(2);
        let shutdown = CancellationToken::new();
        let first = registry.admit(&shutdown).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = registry.admit(&shutdown).await.unwrap();
        let _busy = first.activity.begin_request();
        assert!(registry.shed_idlest());
        assert!(!first.activity.is_shed(), "answering, kept");
        assert!(second.activity.is_shed(), "idle, asked to go");
        assert!(!registry.shed_idlest(), "nobody else to shed");
        drop(second);
        let third = registry.admit(&shutdown).await;
        assert!(third.is_some(), "the shed slot is reused");
    }
}
