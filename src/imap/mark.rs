//! Marking, a step of the watch loop: after the sink said a batch is
//! committed, each mail is flagged, moved or deleted as `after_ingest`
//! says (an oversize mail, of which only the header was stored, is never
//! deleted), and on reconnect the marks an earlier session never got to
//! the server are caught up. It must not mark anything the sink has not
//! committed.

use super::super::command::is_refusal;
use super::super::connect::ImapSession;
use super::super::mailbox::{FETCH_BATCH, Selected, mark, unmarked_committed};
use super::{FetchedMail, MailSink, Watcher};
use crate::settings::AfterIngest;

impl<S: MailSink> Watcher<'_, S> {
    /// Marks committed mails as `after_ingest` says; a refusal is logged
    /// and passed over, a connection error returned.
    pub(super) async fn mark_stored(
        &self,
        session: &mut ImapSession,
        selected: &mut Selected,
        committed: &Committed,
    ) -> anyhow::Result<()> {
        for (after, uids) in committed.marks(&self.settings.after_ingest) {
            if uids.is_empty() {
                continue;
            }
            let marked = self
                .finishing(mark(session, selected, &after, &uids, self.limit))
                .await;
            match marked {
                Ok(()) => {}
                Err(err) if is_refusal(&err) => {
                    tracing::warn!(
                        "Stored {} mails from {} but could not mark them ({after:?}): {err}",
                        uids.len(),
                        selected.name
                    );
                }
                Err(err) => return Err(err.context("while marking stored mails")),
            }
        }
        Ok(())
    }

    /// Marks messages that were committed in an earlier session but whose
    /// mark never reached the server.
    pub(super) async fn catch_up(
        &self,
        session: &mut ImapSession,
        selected: &mut Selected,
        cursor: u32,
    ) -> anyhow::Result<()> {
        let after = &self.settings.after_ingest;
        let uids = self
            .cancellable(unmarked_committed(session, after, cursor, self.limit))
            .await?;
        if uids.is_empty() {
            return Ok(());
        }
        tracing::info!(
            "{} mails in {} were stored earlier but not marked ({after:?}); marking them now.",
            uids.len(),
            selected.name
        );
        for chunk in uids.chunks(FETCH_BATCH) {
            match self
                .cancellable(mark(session, selected, after, chunk, self.limit))
                .await
            {
                Ok(()) => {}
                Err(err) if is_refusal(&err) => {
                    tracing::warn!("Could not mark earlier stored mails: {err}");
                    return Ok(());
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

/// The UIDs of a committed batch, split by what was stored of them.
#[derive(Debug, Default)]
pub(super) struct Committed {
    whole: Vec<u32>,
    /// Oversize: only the header was stored.
    header_only: Vec<u32>,
}

impl Committed {
    pub(super) fn of(mails: &[FetchedMail]) -> Committed {
        let (header_only, whole): (Vec<&FetchedMail>, Vec<&FetchedMail>) =
            mails.iter().partition(|m| m.oversize.is_some());
        Committed {
            whole: whole.iter().map(|m| m.uid).collect(),
            header_only: header_only.iter().map(|m| m.uid).collect(),
        }
    }

    /// Which mark goes to which UIDs. Nothing is lost: of an oversize mail
    /// only the header was stored, so `delete` must not remove it from the
    /// server; it is flagged \Seen instead (`move:` keeps it whole in the
    /// folder, so it is moved like the rest).
    fn marks(&self, after: &AfterIngest) -> Vec<(AfterIngest, Vec<u32>)> {
        match after {
            AfterIngest::Delete => vec![
                (AfterIngest::Delete, self.whole.clone()),
                (AfterIngest::Seen, self.header_only.clone()),
            ],
            other => {
                let mut all = [self.whole.as_slice(), self.header_only.as_slice()].concat();
                all.sort_unstable();
                vec![(other.clone(), all)]
            }
        }
    }
}
