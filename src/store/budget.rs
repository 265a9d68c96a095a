//! The per-mail time budget of ingest (`limits.max_mail_seconds`): the
//! preparing step (parse, classify, strip) runs on a thread of its own
//! that the writer waits on with a timeout, so that a mail slower than the
//! budget is quarantined instead of stalling the mails behind it (and,
//! since its quarantine is committed with the batch, instead of stalling
//! again after every restart). It owns those threads (kept for the next
//! batch once done), the count of them abandoned and still running
//! (bounded), the list of mails once quarantined for time, and the batch
//! the intake will hand over next ([`NextBatch`]), whose first mails are
//! prepared while the batch before it commits; it does not write (that
//! is `ingest.rs`).

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::db::Tx;

use super::inflight::CRASHED_REASON;
use crate::imap::FetchedMail;
use crate::ingest::{Pipeline, Prepared};
use crate::tokens::sha256_hex;

/// How many prepared mails may wait for the writer (each holds a parsed
/// mail in memory).
const PREPARED_AHEAD: usize = 4;

/// How many abandoned preparing threads may run at once (process-wide);
/// each holds its batch and a mail half parsed.
const MAX_ABANDONED: usize = 2;

/// Abandoned preparing threads still running, in this process.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// How a quarantine reason for a mail over the time budget starts: the
/// mark by which a later batch knows not to prepare it again.
pub(super) const OVER_BUDGET: &str = "over the time budget";

/// What the preparing thread hands the writer for one mail.
pub(super) enum Step {
    /// Prepared, or its preparing panicked.
    Ready(std::thread::Result<Prepared>),
    /// Quarantined for time (or for crashes) before: not prepared again.
    KnownSlow,
    /// Only the header was fetched (declared this many bytes, over the
    /// limit): nothing to prepare, the writer refuses it.
    HeaderOnly(u64),
}

/// The preparing thread of one batch, from some mail on.
pub(super) struct Preparer {
    prepared: Receiver<Step>,
    /// Gated: the thread prepares a mail only when the writer asks (see
    /// [`Preparer::start`]).
    gate: Option<SyncSender<bool>>,
    /// Set by whichever of the writer (abandoning) and the thread
    /// (ending) comes second to it, so that [`ABANDONED`] counts each
    /// abandoned thread once and only while it runs.
    abandoned: Arc<AtomicBool>,
}

/// Held by a preparing thread: when it ends (even by a panic), an
/// abandoned thread no longer counts.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.swap(true, Ordering::SeqCst) {
            ABANDONED.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Preparer {
    /// Starts preparing `mails[from..]` on a preparing thread. The job owns
    /// what it reads (the batch is shared, not copied), so the writer may
    /// abandon it: it ends by itself after the mail it is on, when it
    /// finds the writer gone. `gated`: it prepares nothing ahead, each
    /// mail only once the writer has named it in the in-flight marker, so
    /// that a crash in preparing is counted against the right mail.
    pub(super) fn start(
        pipeline: &Pipeline,
        mails: &Arc<[FetchedMail]>,
        from: usize,
        known_slow: &Arc<HashSet<String>>,
        gated: bool,
    ) -> anyhow::Result<Preparer> {
        let (ready, prepared) = sync_channel(PREPARED_AHEAD);
        let (gate, permits) = if gated {
            let (gate, permits) = sync_channel(1);
            (Some(gate), Some(permits))
        } else {
            (None, None)
        };
        let abandoned = Arc::new(AtomicBool::new(false));
        let running = Running(Arc::clone(&abandoned));
        let pipeline = pipeline.clone();
        let mails = Arc::clone(mails);
        let known_slow = Arc::clone(known_slow);
        on_preparing_thread(Box::new(move || {
            let _running = running;
            for mail in mails.get(from..).unwrap_or_default() {
                match permits.as_ref().map(Receiver::recv) {
                    None | Some(Ok(true)) => {}
                    Some(Ok(false)) => continue, // the writer skips it
                    Some(Err(_)) => break,       // the writer is gone
                }
                let step = if let Some(size) = mail.oversize {
                    Step::HeaderOnly(size)
                } else if !known_slow.is_empty() && known_slow.contains(&sha256_hex(&mail.raw)) {
                    Step::KnownSlow
                } else {
                    Step::Ready(prepare_contained(&pipeline, &mail.raw))
                };
                if ready.send(step).is_err() {
                    break; // the writer gave up on this thread
                }
            }
        }))?;
        Ok(Preparer {
            prepared,
            gate,
            abandoned,
        })
    }

    pub(super) fn gated(&self) -> bool {
        self.gate.is_some()
    }

    /// The next mail's step, or `None` when it took longer than `budget`.
    pub(super) fn next(&self, budget: Duration) -> anyhow::Result<Option<Step>> {
        self.permit(true)?;
        match self.prepared.recv_timeout(budget) {
            Ok(step) => Ok(Some(step)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the preparing thread ended early")
            }
        }
    }

    /// Passes over the next mail without preparing it (gated only: an
    /// ungated thread has prepared it already, and `next` takes it).
    pub(super) fn skip(&self) -> anyhow::Result<()> {
        self.permit(false)
    }

    fn permit(&self, prepare: bool) -> anyhow::Result<()> {
        match &self.gate {
            Some(gate) => gate
                .send(prepare)
                .map_err(|_| anyhow::anyhow!("the preparing thread ended early")),
            None => Ok(()),
        }
    }

    /// Leaves the thread to end by itself (it is on a mail over the
    /// budget) and waits, before the caller starts another, while
    /// [`MAX_ABANDONED`] abandoned ones still run: each is linear, so they
    /// end, and N slow mails never mean N threads.
    pub(super) fn abandon(self) {
        if !self.abandoned.swap(true, Ordering::SeqCst) {
            ABANDONED.fetch_add(1, Ordering::SeqCst);
        }
        drop(self);
        let mut warned = false;
        while ABANDONED.load(Ordering::SeqCst) >= MAX_ABANDONED {
            if !warned {
                tracing::warn!(
                    "{MAX_ABANDONED} mails over the time budget are still being read; \
                     ingest waits for one to finish before it goes on"
                );
                warned = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The batch an intake has fetched and will hand over next (see
/// [`crate::store::Store::upcoming_batch`]), and its preparer once
/// started. The writer starts it when it has taken every mail of the
/// batch before, so that the next batch's first mails are prepared while
/// that batch commits instead of after: the writer waited for each
/// batch's first mail (often its largest, the one that did not fit in
/// the batch before). No more mails are held than while a batch runs:
/// the batch's mails are the intake's own copy, and at most
/// [`PREPARED_AHEAD`] prepared mails wait, as within a batch; the overlap
/// with the commit still costs about 1.4 MB of peak RSS, which the
/// writer's smaller cache gives back in part (docs/performance.md, the
/// fifteenth pass). One batch at a time: a batch handed over that is not
/// the announced one (another mailbox's, a batch fetched again) finds it
/// dropped, unused. It is prepared with the pipeline of the writer that
/// starts it: the daemon has one.
#[derive(Default)]
pub(super) struct NextBatch(Mutex<Option<Upcoming>>);

struct Upcoming {
    mails: Arc<[FetchedMail]>,
    preparer: Option<Preparer>,
}

impl NextBatch {
    /// Notes `mails` as the batch handed over next (replacing any other).
    pub(super) fn announce(&self, mails: Arc<[FetchedMail]>) {
        *self.slot() = Some(Upcoming {
            mails,
            preparer: None,
        });
    }

    /// Starts preparing the announced batch, if there is one not started.
    /// Called by a writer that prepared ungated and quarantined nothing
    /// for time: after a crash, or beside a mail still being read past the
    /// budget, nothing is prepared ahead (`known_slow` is that batch's).
    pub(super) fn start(&self, pipeline: &Pipeline, known_slow: &Arc<HashSet<String>>) {
        let mut slot = self.slot();
        let Some(upcoming) = slot.as_mut() else {
            return;
        };
        if upcoming.preparer.is_some() {
            return;
        }
        match Preparer::start(pipeline, &upcoming.mails, 0, known_slow, false) {
            Ok(preparer) => upcoming.preparer = Some(preparer),
            Err(err) => {
                tracing::debug!("the next batch is not prepared ahead: {err:#}");
                *slot = None;
            }
        }
    }

    /// The preparer of `mails` if they are the announced batch and its
    /// preparing started. Another batch announced is kept while it has
    /// not started (it is announced while the batch before it is being
    /// stored, perhaps before that batch took this), dropped once it has
    /// (it was read ahead for a batch that did not come next).
    pub(super) fn take(&self, mails: &Arc<[FetchedMail]>) -> Option<Preparer> {
        let mut slot = self.slot();
        let upcoming = slot.take()?;
        if Arc::ptr_eq(&upcoming.mails, mails) {
            return upcoming.preparer;
        }
        if upcoming.preparer.is_none() {
            *slot = Some(upcoming);
        }
        None
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Upcoming>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A preparing job: one batch's mails, from some mail on.
type Job = Box<dyn FnOnce() + Send>;

/// Preparing threads waiting for their next batch (each by the sender of
/// its own job queue), at most [`MAX_IDLE`].
static IDLE: Mutex<Vec<Sender<Job>>> = Mutex::new(Vec::new());

/// Idle preparing threads kept: one for the batches, one spare for the
/// batch after a mail over the budget (whose thread is still busy).
const MAX_IDLE: usize = 2;

/// Runs `job` on an idle preparing thread, or on a new one. A thread
/// lives on after its batch: a new thread per batch (200 in a
/// 10,000-mail ingest) built every regex's lazy cache anew in each, ~8 MB
/// of the daemon's peak RSS and ~2% of its CPU.
fn on_preparing_thread(job: Job) -> anyhow::Result<()> {
    let idle = IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let job = match idle {
        Some(thread) => match thread.send(job) {
            Ok(()) => return Ok(()),
            Err(returned) => returned.0, // that thread is gone: a new one
        },
        None => job,
    };
    let (jobs, queue) = channel::<Job>();
    let me = jobs.clone();
    std::thread::Builder::new()
        .name("prepare".to_string())
        .spawn(move || {
            while let Ok(job) = queue.recv() {
                job();
                let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
                if idle.len() >= MAX_IDLE {
                    return;
                }
                idle.push(me.clone());
            }
        })
        .map_err(|err| anyhow::anyhow!("cannot start the preparing thread: {err}"))?;
    jobs.send(job)
        .map_err(|_| anyhow::anyhow!("the preparing thread ended before its first batch"))
}

/// [`Pipeline::prepare`], with a panic kept as the mail's failure.
pub(super) fn prepare_contained(pipeline: &Pipeline, raw: &[u8]) -> std::thread::Result<Prepared> {
    #[cfg(test)]
    tests::slow_hook(raw);
    catch_unwind(AssertUnwindSafe(|| pipeline.prepare(raw)))
}

/// The content hashes of the mails quarantined for time or because the
/// process died on them (few: only hostile mail lands there): fetched
/// again, they are not prepared again.
pub(super) fn known_slow(tx: &Tx) -> anyhow::Result<HashSet<String>> {
    let mut statement = tx.prepare_cached(
        "SELECT r.sha256 FROM quarantine q JOIN raw_mails r ON r.id = q.raw_mail_id
         WHERE q.kind = 'fault' AND (q.reason LIKE ?1 OR q.reason = ?2)",
    )?;
    let over_budget = format!("{OVER_BUDGET}%");
    let rows = statement.query_map([over_budget.as_str(), CRASHED_REASON], |r| {
        r.get::<_, String>(0)
    })?;
    rows.collect::<Result<_, _>>()
}

/// The quarantine reason of a mail whose `step` took longer than `budget`.
pub(super) fn over_budget_reason(step: &str, budget: Duration) -> String {
    format!(
        "{OVER_BUDGET}: {step} took longer than the limit of {} s (limits.max_mail_seconds)",
        budget.as_secs_f64()
    )
}

#[cfg(test)]
#[path = "budget_tests.rs"]
pub(super) mod tests;
