//! A PostgreSQL connection on its own thread. The blocking `postgres`
//! client drives a small tokio runtime of its own, which tokio forbids on a
//! thread already inside a runtime, and the store is called from async
//! tasks too. So each connection lives on a thread of its own and the
//! caller hands it work ([`PgWorker::run`]), waiting for the answer as it
//! would wait for SQLite. Owns the client; knows no SQL.

use std::sync::mpsc;
use std::thread;

use anyhow::Context;

type Job = Box<dyn FnOnce(&mut postgres::Client) + Send>;

/// The handle on a connection's thread; dropping it ends the thread and
/// closes the connection.
pub struct PgWorker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl PgWorker {
    /// Connects on a new thread; fails as the connection would.
    pub fn connect(config: postgres::Config, tls: super::tls::Tls) -> anyhow::Result<PgWorker> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready, connected) = mpsc::channel::<Result<(), postgres::Error>>();
        let thread = thread::Builder::new()
            .name("postdesk-pg".into())
            .spawn(move || {
                let mut client = match config.connect(tls) {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        client
                    }
                    Err(err) => {
                        let _ = ready.send(Err(err));
                        return;
                    }
                };
                for job in inbox {
                    job(&mut client);
                }
            })
            .context("cannot start a PostgreSQL connection thread")?;
        let outcome = connected
            .recv()
            .context("the PostgreSQL connection thread ended")?;
        let worker = PgWorker {
            jobs: Some(jobs),
            thread: Some(thread),
        };
        outcome.context("cannot connect to PostgreSQL (database.url)")?;
        Ok(worker)
    }

    /// Runs `job` with the client on the connection's thread and returns
    /// its result.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut postgres::Client) -> R + Send + 'static,
    ) -> anyhow::Result<R> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client| {
            let _ = reply.send(job(client));
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| super::pg::connection_lost("the connection is closed"))?
            .send(job)
            .map_err(|_| super::pg::connection_lost("the connection's thread ended"))?;
        answer
            .recv()
            .map_err(|_| super::pg::connection_lost("the connection's thread ended mid-statement"))
    }
}

impl Drop for PgWorker {
    fn drop(&mut self) {
        // Closing the queue ends the thread's loop; the client closes with it.
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
