//! The first start of a mailbox (no checkpoint, issue 12), a step of the
//! watch loop: read mail is left alone, unread mail is taken, and the
//! checkpoint lands on the mailbox's highest UID in the transaction of the
//! last batch. It must not touch read mail (no fetch, no mark) and must
//! not record a checkpoint before the unread mail below it is stored.

use tokio::time::sleep;

use super::super::connect::ImapSession;
use super::super::mailbox::{Selected, first_look};
use super::{Backoff, MailSink, Piped, Synced, Watcher};

impl<S: MailSink> Watcher<'_, S> {
    /// The first start of a mailbox (no checkpoint): read mail is left
    /// alone, unread mail is taken, and the checkpoint is recorded at the
    /// mailbox's highest UID with the last batch (alone if nothing is
    /// unread), so the read mail below it is never fetched later either.
    /// The batches before the last record no checkpoint: if we stop or
    /// fail midway, the next start is a first start again, and what was
    /// stored meanwhile is marked (no longer unread) or a Message-ID
    /// duplicate. A new UIDVALIDITY is not a first start (see `session`).
    pub(super) async fn first_sync(
        &self,
        session: &mut ImapSession,
        selected: &mut Selected,
        cursor: &mut u32,
        sink_backoff: &mut Backoff,
    ) -> anyhow::Result<Synced> {
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(Synced::Stopping);
            }
            let look = self.cancellable(first_look(session, self.limit)).await?;
            let piped = if look.unseen.is_empty() {
                let name = selected.name.clone();
                let stored = self
                    .store(
                        &name,
                        selected.uidvalidity,
                        Vec::new().into(),
                        Some(look.top),
                    )
                    .await;
                if stored {
                    Piped::Done
                } else {
                    Piped::SinkFailed
                }
            } else {
                self.pipeline(session, selected, cursor, &look.unseen, Some(look.top))
                    .await?
            };
            match piped {
                Piped::Done => {
                    *cursor = look.top;
                    sink_backoff.reset();
                    let read = look.total.saturating_sub(look.unseen.len());
                    tracing::info!(
                        "First start of {}: {read} read mails left alone, {} unread taken.",
                        selected.name,
                        look.unseen.len()
                    );
                    return Ok(Synced::Quiet);
                }
                Piped::Stopping => return Ok(Synced::Stopping),
                Piped::SinkFailed => {
                    let delay = sink_backoff.next_delay();
                    tracing::warn!("Retrying the first start in {} s.", delay.as_secs());
                    tokio::select! {
                        _ = sleep(delay) => {}
                        _ = self.shutdown.cancelled() => return Ok(Synced::Stopping),
                    }
                }
            }
        }
    }
}
