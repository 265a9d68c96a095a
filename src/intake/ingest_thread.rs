//! The ingest thread: the one OS thread a running daemon writes its IMAP
//! batches on (one per [`crate::app::App`] run, shared by its mailboxes),
//! instead of whichever thread of tokio's blocking pool is free. glibc
//! gives each thread an arena and keeps what is freed there; a writer that
//! moved between four pool threads in one ingest left its working set in
//! both arenas and built its per-thread caches (the regexes') in each. On
//! one thread the ingest benchmark's peak RSS fell by 0.7–1.8 MB
//! (docs/performance.md). It owns that thread only; what runs on it is the
//! caller's, and must not wait on the async runtime.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

type Job = Box<dyn FnOnce() + Send>;

/// One daemon's ingest thread, started on first use; it ends when this
/// is dropped (after the work handed over).
#[derive(Default)]
pub struct IngestThread {
    queue: Mutex<Option<Sender<Job>>>,
}

impl IngestThread {
    /// Runs `work` on the thread, after the work handed over before it,
    /// and returns its result. A panic in `work` is an error here and
    /// leaves the thread running for the next.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The receiver may be gone (its task was cancelled): nothing to tell.
            let _ = done.send(catch_unwind(AssertUnwindSafe(work)));
        });
        self.hand_over(job)?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => anyhow::bail!(
                "ingest panicked: {}",
                crate::ingest::panic_message(panic.as_ref())
            ),
            Err(_) => anyhow::bail!("the ingest thread ended before the work was done"),
        }
    }

    fn hand_over(&self, job: Job) -> anyhow::Result<()> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let job = match queue.as_ref() {
            Some(running) => match running.send(job) {
                Ok(()) => return Ok(()),
                Err(returned) => returned.0, // the thread is gone: a new one
            },
            None => job,
        };
        let (sender, jobs) = channel::<Job>();
        std::thread::Builder::new()
            .name("ingest".to_string())
            .spawn(move || {
                while let Ok(job) = jobs.recv() {
                    job();
                }
            })
            .map_err(|err| anyhow::anyhow!("cannot start the ingest thread: {err}"))?;
        sender
            .send(job)
            .map_err(|_| anyhow::anyhow!("the ingest thread ended before its first batch"))?;
        *queue = Some(sender);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn where_it_runs() -> (Option<String>, std::thread::ThreadId) {
        let current = std::thread::current();
        (current.name().map(str::to_string), current.id())
    }

    #[tokio::test]
    async fn work_runs_in_turn_on_one_thread_and_a_panic_does_not_end_it() {
        let ingest = IngestThread::default();
        let (name, first) = ingest.run(where_it_runs).await.unwrap();
        assert_eq!(name.as_deref(), Some("ingest"));

        let panicked = ingest.run(|| -> u32 { panic!("a hostile batch") }).await;
        let err = panicked.expect_err("a panic is an error");
        assert!(err.to_string().contains("a hostile batch"), "{err:#}");

        let (_, after) = ingest.run(where_it_runs).await.unwrap();
        assert_eq!(after, first, "the work moved to another thread");

        // Another daemon (another test's app) has a thread of its own.
        let (_, other) = IngestThread::default().run(where_it_runs).await.unwrap();
        assert_ne!(other, first);
    }
}
