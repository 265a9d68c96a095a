//! The ingest thread: the one OS thread the daemon writes its IMAP batches
//! on, instead of whichever thread of tokio's blocking pool is free. glibc
//! gives each thread an arena and keeps what is freed there; a writer that
//! moved between four pool threads in one ingest left its working set in
//! both arenas and built its per-thread caches (the regexes') in each. On
//! one thread the ingest benchmark's peak RSS fell by 0.7–1.7 MB (README,
//! Performance). It owns that thread only; what runs on it is the
//! caller's, and must not wait on the async runtime.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

type Job = Box<dyn FnOnce() + Send>;

/// The ingest thread's queue, started on first use.
static QUEUE: Mutex<Option<Sender<Job>>> = Mutex::new(None);

/// Runs `work` on the ingest thread, after the work handed over before
/// it, and returns its result. A panic in `work` is an error here and
/// leaves the thread running for the next.
pub async fn on_ingest_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        // The receiver may be gone (its task was cancelled): nothing to tell.
        let _ = done.send(catch_unwind(AssertUnwindSafe(work)));
    });
    hand_over(job)?;
    match result.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => anyhow::bail!(
            "ingest panicked: {}",
            crate::ingest::panic_message(panic.as_ref())
        ),
        Err(_) => anyhow::bail!("the ingest thread ended before the work was done"),
    }
}

fn hand_over(job: Job) -> anyhow::Result<()> {
    let mut queue = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_in_turn_on_one_thread_and_a_panic_does_not_end_it() {
        let name = || std::thread::current().name().map(str::to_string);
        let first = on_ingest_thread(move || (name(), std::thread::current().id()));
        let (first_name, first_id) = first.await.unwrap();
        assert_eq!(first_name.as_deref(), Some("ingest"));

        let panicked = on_ingest_thread(|| -> u32 { panic!("a hostile batch") }).await;
        let err = panicked.expect_err("a panic is an error");
        assert!(err.to_string().contains("a hostile batch"), "{err:#}");

        let (_, after_id) = on_ingest_thread(move || (name(), std::thread::current().id()))
            .await
            .unwrap();
        assert_eq!(after_id, first_id, "the work moved to another thread");
    }
}
