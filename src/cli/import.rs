//! `postdesk import [--queue Q] [--since DATE]`: brings the mail already in
//! a queue's IMAP folder in as history, so that a desk switched on over an
//! existing support mailbox knows its past conversations. It takes only
//! what the daemon never will: before the first start the read mail, after
//! it the mail at or below the checkpoint; unread mail is left to the
//! daemon, which confirms and notifies as usual. Read-only on the
//! server (nothing flagged, moved or deleted, no checkpoint moved); every
//! mail is threaded and stored as of its own Date, sends nothing, and the
//! tickets it makes are closed. Running it again is harmless: a mail
//! already stored is a duplicate. Without `--queue`, every queue whose IMAP
//! is enabled is imported in turn.

use std::cell::RefCell;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use chrono::{NaiveDate, Utc};

use crate::imap::{FetchLimits, read_history};
use crate::intake::{self, Verdict};
use crate::oauth::TokenSource;
use crate::settings::{Queue, Settings};

/// What one queue's import did, counted by verdict.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    in_folder: usize,
    found: usize,
    new_tickets: usize,
    follow_ups: usize,
    duplicates: usize,
    ignored: usize,
    quarantined: usize,
}

impl Tally {
    fn add(&mut self, verdict: &Verdict) {
        match verdict {
            Verdict::NewTicket { .. } => self.new_tickets += 1,
            Verdict::FollowUp { .. } => self.follow_ups += 1,
            Verdict::Duplicate => self.duplicates += 1,
            Verdict::Ignored { .. } => self.ignored += 1,
            // Refusals and failures do not come back from a committed batch.
            _ => self.quarantined += 1,
        }
    }
}

/// Parses `--since` (YYYY-MM-DD).
pub fn parse_since(text: &str) -> anyhow::Result<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .with_context(|| format!("--since `{text}` is not a date like 2026-01-31"))
}

/// Runs the command.
pub fn run(
    settings: &Settings,
    queue: Option<&str>,
    since: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let since = since.map(parse_since).transpose()?;
    let queues = match queue {
        Some(name) => match settings.queue(name) {
            Some(q) => vec![q],
            None => bail!("there is no queue `{name}` (see `postdesk check-config`)"),
        },
        None => settings
            .queues()
            .into_iter()
            .filter(|q| q.imap.enabled)
            .collect(),
    };
    if queues.is_empty() {
        bail!("no queue reads IMAP (imap.enabled is false everywhere): nothing to import");
    }
    let (store, pipeline) = crate::app::open_store(settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let limits = FetchLimits::new(settings.limits.max_message_bytes);
    for queue in &queues {
        let tally = runtime.block_on(import_queue(queue, since, &limits, &store, &pipeline))?;
        println!(
            "queue {}: {} mails in {}, {} of them history; {} new tickets (closed), \
             {} added to tickets, {} already stored, {} ignored, {} quarantined; \
             nothing was sent; {} left to the daemon",
            queue.name,
            tally.in_folder,
            queue.imap.mailbox,
            tally.found,
            tally.new_tickets,
            tally.follow_ups,
            tally.duplicates,
            tally.ignored,
            tally.quarantined,
            tally.in_folder - tally.found
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn import_queue(
    queue: &Queue,
    since: Option<NaiveDate>,
    limits: &FetchLimits,
    store: &Arc<crate::store::Store>,
    pipeline: &Arc<crate::ingest::Pipeline>,
) -> anyhow::Result<Tally> {
    // One batch at a time on this thread: the cell is never borrowed twice.
    let tally = RefCell::new(Tally::default());
    let imap = &queue.imap;
    let tokens = TokenSource::for_logins(&queue.imap, &queue.smtp, &queue.oauth, &queue.name)?;
    let checkpoint = store.checkpoint(&queue.checkpoint_key())?;
    let count = read_history(
        imap,
        tokens.as_deref(),
        (since, checkpoint),
        limits,
        |uidvalidity, mails| {
            let (store, pipeline) = (Arc::clone(store), Arc::clone(pipeline));
            let (account, folder) = (imap.username.clone(), imap.mailbox.clone());
            let tally = &tally;
            async move {
                let verdicts = tokio::task::spawn_blocking(move || {
                    let from = (account.as_str(), folder.as_str(), uidvalidity);
                    intake::receive_history(&store, &pipeline, from, mails, Utc::now())
                })
                .await??;
                let mut tally = tally.borrow_mut();
                verdicts.iter().for_each(|v| tally.add(v));
                Ok(())
            }
        },
    )
    .await
    .with_context(|| format!("importing queue {} ({})", queue.name, imap.mailbox))?;
    let mut tally = tally.into_inner();
    tally.in_folder = count.in_folder;
    tally.found = count.found;
    Ok(tally)
}
