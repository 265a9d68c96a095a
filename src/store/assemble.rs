//! Assembling outgoing mails beside the writer (issue 16 §1). Composing
//! decides every header and part of a mail we send, inside the savepoint
//! of the mail that makes us send it; turning them into bytes (lettre's
//! MIME tree, quoted-printable, base64) needs nothing from the store and
//! was a large share of the writer's CPU. So a batch's outgoing mails are
//! assembled on a thread of that batch while the writer decides the next
//! mails, and their outbox rows are written when the batch ends, just
//! before it commits: in the same transaction, so a mail and what it
//! sends are stored together or not at all. The rest of what a mail we
//! send writes (its message row, its count toward the per-address limit)
//! is written in the mail's savepoint as before, since later mails of the
//! batch read it.
//!
//! Owns that thread and the rows waiting for their bytes; what an outbox
//! row holds is `write`'s. A mail whose parts are over
//! [`ASSEMBLED_BESIDE_MAX`] is assembled by the writer, inside its
//! mail's time budget, as before (a hostile 20 MB reply stays bounded by
//! the budget). If assembling fails or panics on the thread, which the
//! parts are built not to do, the batch fails with an error: nothing of
//! it is stored and its source gives it again (IMAP leaves it unmarked,
//! LMTP answers 451), and from then on this process assembles in the
//! writer, where a mail that fails is quarantined as any other.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};

use super::db::Tx;
use super::write::{insert_outbox, record_sent};
use crate::domain::TicketNumber;
use crate::ingest::panic_message;
use crate::outbound::compose::{MailBytes, MailParts, OutgoingMail};

/// Bytes of a mail's parts (text, HTML, files) up to which it is
/// assembled beside the writer. Our confirmations and notifications are a
/// few KB (a notification quotes at most 8 KB of the customer's text).
pub(super) const ASSEMBLED_BESIDE_MAX: usize = 64 * 1024;

/// The outgoing mails of one batch, on their way to the outbox.
pub(super) struct Assembler<'a> {
    /// Set once assembling failed on the thread in this process: mails
    /// are then assembled by the writer. `None`: always by the writer.
    failed_before: Option<&'a AtomicBool>,
    /// The rows of the mail being written, kept once its savepoint is.
    this_mail: Vec<Row>,
    /// The rows of the mails kept, in the order they were queued.
    rows: Vec<Row>,
    thread: Option<AssemblingThread>,
}

struct Row {
    ticket: Option<TicketNumber>,
    mail: OutgoingMail,
    now: DateTime<Utc>,
    /// The row's job on the thread; `None`: its bytes are in `mail`.
    job: Option<usize>,
}

impl<'a> Assembler<'a> {
    /// Every mail assembled by the writer and its outbox row written at
    /// once (a mail taken again from the quarantine, alone).
    pub(super) fn in_writer() -> Assembler<'a> {
        Assembler {
            failed_before: None,
            this_mail: Vec::new(),
            rows: Vec::new(),
            thread: None,
        }
    }

    /// Small mails assembled beside the writer, unless `failed_before`
    /// says that failed once in this process.
    pub(super) fn beside_writer(failed_before: &'a AtomicBool) -> Assembler<'a> {
        Assembler {
            failed_before: Some(failed_before),
            ..Assembler::in_writer()
        }
    }

    fn beside(&self) -> bool {
        self.failed_before
            .is_some_and(|failed| !failed.load(Ordering::Relaxed))
    }

    /// Queues `mail`, sent about `ticket`: its message row now, its outbox
    /// row when the batch ends (at once in the writer's mode).
    pub(super) fn enqueue(
        &mut self,
        tx: &Tx,
        ticket: Option<TicketNumber>,
        mail: OutgoingMail,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        record_sent(tx, ticket, &mail, now)?;
        if !self.beside() {
            return insert_outbox(tx, ticket, &mail, &mail.bytes()?, now);
        }
        let mail = match &mail.raw {
            MailBytes::Parts(parts) if parts.body_size() > ASSEMBLED_BESIDE_MAX => {
                mail.assembled()?
            }
            _ => mail,
        };
        self.this_mail.push(Row {
            ticket,
            mail,
            now,
            job: None,
        });
        Ok(())
    }

    /// The mail being written is kept (its savepoint released): its mails
    /// go to the thread.
    pub(super) fn keep_mail(&mut self) {
        for mut row in std::mem::take(&mut self.this_mail) {
            match take_bytes(&mut row.mail) {
                MailBytes::Parts(parts) => row.job = Some(self.send(parts)),
                assembled => row.mail.raw = assembled,
            }
            self.rows.push(row);
        }
    }

    /// The mail being written is rolled back: so are its mails.
    pub(super) fn drop_mail(&mut self) {
        self.this_mail.clear();
    }

    /// Hands `parts` to the thread (started with the batch's first);
    /// returns its job number.
    fn send(&mut self, parts: Box<MailParts>) -> usize {
        let thread = self.thread.get_or_insert_with(AssemblingThread::start);
        let job = thread.jobs;
        thread.jobs += 1;
        if let Some(sender) = &thread.sender {
            // A thread that ended early is found out in `finish`.
            let _ = sender.send(parts);
        }
        job
    }

    /// Writes every kept mail's outbox row, in order, once its bytes are
    /// assembled.
    pub(super) fn finish(mut self, tx: &Tx) -> anyhow::Result<()> {
        self.this_mail.clear();
        let mut assembled = match self.thread.take() {
            Some(thread) => thread.results(),
            None => Vec::new(),
        }
        .into_iter();
        for mut row in self.rows {
            let bytes = match row.job {
                None => take_bytes(&mut row.mail).assemble()?,
                Some(job) => match assembled.next() {
                    Some(Ok(bytes)) => bytes,
                    failed => {
                        if let Some(flag) = self.failed_before {
                            flag.store(true, Ordering::Relaxed);
                        }
                        let why = match failed {
                            Some(Err(why)) => why,
                            _ => "the assembling thread ended early".to_string(),
                        };
                        anyhow::bail!(
                            "assembling outgoing mail {job} of the batch failed beside the \
                             writer ({why}); the batch is given up and will be stored again \
                             with every mail assembled by the writer"
                        );
                    }
                },
            };
            insert_outbox(tx, row.ticket, &row.mail, &bytes, row.now)?;
        }
        Ok(())
    }
}

/// `mail`'s bytes or parts, moved out (an empty placeholder left).
fn take_bytes(mail: &mut OutgoingMail) -> MailBytes {
    std::mem::replace(&mut mail.raw, MailBytes::Assembled(Vec::new()))
}

/// A mail's bytes, or why assembling them failed.
type Assembled = Result<Vec<u8>, String>;

/// The thread that assembles one batch's mails, in the order sent.
struct AssemblingThread {
    sender: Option<Sender<Box<MailParts>>>,
    handle: Option<JoinHandle<Vec<Assembled>>>,
    jobs: usize,
}

impl AssemblingThread {
    fn start() -> AssemblingThread {
        let (sender, jobs) = channel::<Box<MailParts>>();
        let handle = std::thread::Builder::new()
            .name("postdesk-assemble".into())
            .spawn(move || {
                jobs.iter()
                    .map(
                        |parts| match catch_unwind(AssertUnwindSafe(|| parts.assemble())) {
                            Ok(Ok(bytes)) => Ok(bytes),
                            Ok(Err(err)) => Err(format!("{err:#}")),
                            Err(panic) => Err(format!("panicked: {}", panic_message(&*panic))),
                        },
                    )
                    .collect()
            });
        match handle {
            Ok(handle) => AssemblingThread {
                sender: Some(sender),
                handle: Some(handle),
                jobs: 0,
            },
            Err(err) => {
                tracing::warn!("No thread to assemble outgoing mails on: {err}");
                AssemblingThread {
                    sender: None,
                    handle: None,
                    jobs: 0,
                }
            }
        }
    }

    /// The bytes of every job, in order; fewer if the thread ended early.
    fn results(mut self) -> Vec<Assembled> {
        self.sender = None; // the thread's loop ends with its last job
        self.handle
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
