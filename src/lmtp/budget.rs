//! What all LMTP connections together may hold in memory: a message is
//! read only with one of a few DATA slots, so at most `slots` messages of
//! at most `limits.max_message_bytes` each are in RAM at once, whatever
//! the number of connections; and how long one DATA phase may last in all.
//! It counts the bytes the slots hold (the figure the tests assert). It
//! must not read or write a connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Messages read at once across all connections. With the default 25 MB
/// cap that is 100 MB at most; the store writes one mail at a time anyway.
pub const DATA_SLOTS: usize = 4;
/// How long a connection waits for a slot before it answers 451: below
/// Postfix's `lmtp_data_init_timeout` (120 s), so the MTA hears why.
pub const SLOT_WAIT: Duration = Duration::from_secs(60);
/// The longest a whole message may take, from 354 to the final dot: the
/// per-line timeout alone would let a slow drip hold a slot for ever.
pub const DATA_DEADLINE: Duration = Duration::from_secs(600);

/// The DATA slots shared by every connection of one server.
#[derive(Debug)]
pub struct DataBudget {
    slots: Arc<Semaphore>,
    held: AtomicU64,
    peak: AtomicU64,
    wait: Duration,
    deadline: Duration,
}

impl DataBudget {
    /// `slots` messages at once; a connection waits `wait` for one; one
    /// message may take `deadline`.
    pub fn new(slots: usize, wait: Duration, deadline: Duration) -> Arc<DataBudget> {
        Arc::new(DataBudget {
            slots: Arc::new(Semaphore::new(slots)),
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            wait,
            deadline,
        })
    }

    /// The server's budget: [`DATA_SLOTS`], [`SLOT_WAIT`], [`DATA_DEADLINE`].
    pub fn standard() -> Arc<DataBudget> {
        DataBudget::new(DATA_SLOTS, SLOT_WAIT, DATA_DEADLINE)
    }

    /// A slot, or `None` when none came free within the wait.
    pub async fn acquire(self: &Arc<Self>) -> Option<DataSlot> {
        let permit = Arc::clone(&self.slots).acquire_owned();
        let permit = tokio::time::timeout(self.wait, permit).await.ok()?.ok()?;
        Some(DataSlot {
            budget: Arc::clone(self),
            _permit: permit,
            held: 0,
        })
    }

    /// How long one message may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Message bytes the slots hold now.
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The most message bytes the slots ever held at once.
    pub fn peak_bytes(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// One message's right to be read; its bytes are counted until it drops.
#[derive(Debug)]
pub struct DataSlot {
    budget: Arc<DataBudget>,
    _permit: OwnedSemaphorePermit,
    held: u64,
}

impl DataSlot {
    /// The message now holds `bytes`.
    pub fn hold(&mut self, bytes: u64) {
        let held = &self.budget.held;
        if bytes >= self.held {
            let now = held.fetch_add(bytes - self.held, Ordering::Relaxed) + (bytes - self.held);
            self.budget.peak.fetch_max(now, Ordering::Relaxed);
        } else {
            held.fetch_sub(self.held - bytes, Ordering::Relaxed);
        }
        self.held = bytes;
    }
}

impl Drop for DataSlot {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.held, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_shared_counted_and_given_back() {
        let budget = DataBudget::new(2, Duration::from_millis(50), DATA_DEADLINE);
        let mut a = budget.acquire().await.expect("a first slot");
        let mut b = budget.acquire().await.expect("a second slot");
        assert!(
            budget.acquire().await.is_none(),
            "a third waits, then gives up"
        );
        a.hold(100);
        b.hold(300);
        a.hold(40);
        assert_eq!((budget.held_bytes(), budget.peak_bytes()), (340, 400));
        drop(b);
        assert_eq!(budget.held_bytes(), 40);
        let c = budget.acquire().await.expect("a freed slot is taken");
        drop((a, c));
        assert_eq!((budget.held_bytes(), budget.peak_bytes()), (0, 400));
    }
}
