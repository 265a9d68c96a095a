//! History: reads the mail already in a folder for `postdesk import` (the
//! part the live path never takes, see [`history_search`]; all of it or
//! what arrived since a date), strictly read-only: the folder is
//! EXAMINEd and bodies fetched with BODY.PEEK, so no flag changes, nothing
//! moves and no checkpoint is touched. Batches are planned by declared size
//! as the watcher's are, so a mailbox of years holds at most one batch in
//! memory. It must not store, parse or decide anything: each batch goes to
//! the caller's `on_batch`.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use chrono::NaiveDate;

use super::batch::{self, FetchLimits};
use super::command::imap_error;
use super::connect::{ImapSession, connect_with, logout};
use super::mailbox::{fetch_batch, search, sizes};
use super::{Checkpoint, FetchedMail};
use crate::oauth::TokenSource;
use crate::settings::ImapSettings;

/// What one import read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCount {
    /// Messages in the folder (since the day asked for).
    pub in_folder: usize,
    /// Of those, the history the import takes (see [`history_search`]).
    pub found: usize,
    /// Messages handed to `on_batch` (whole or, over the size limit, header only).
    pub fetched: usize,
}

/// The day-text of IMAP SEARCH (RFC 3501: `1-Feb-2026`).
fn since_text(since: Option<NaiveDate>) -> String {
    since.map_or(String::new(), |day| {
        format!(" SINCE {}", day.format("%-d-%b-%Y"))
    })
}

/// The search for the mail an import may take: only what the live path
/// never will, so a customer's unanswered mail is never turned into closed
/// history. With no checkpoint (before the first start) that is the read
/// (`\Seen`) mail, which a first start leaves alone; with a checkpoint of
/// this UIDVALIDITY, the mail at or below it (what the daemon took there is
/// known already and counts as a duplicate). `None` when nothing may be
/// taken: the checkpoint is of another UIDVALIDITY, so the daemon reads the
/// folder again whole, or it is at UID 0.
pub fn history_search(
    since: Option<NaiveDate>,
    checkpoint: Option<Checkpoint>,
    uidvalidity: u32,
) -> Option<String> {
    let since = since_text(since);
    match checkpoint {
        None => Some(format!("UID SEARCH SEEN{since}")),
        Some(c) if c.uidvalidity == uidvalidity && c.last_uid > 0 => {
            Some(format!("UID SEARCH UID 1:{}{since}", c.last_uid))
        }
        Some(_) => None,
    }
}

/// Reads the history of `settings.mailbox` (see [`history_search`]; the
/// caller passes the mailbox's committed checkpoint), oldest UID first,
/// logging in as `settings.auth` says (`tokens` for XOAUTH2), and hands
/// each batch with the folder's UIDVALIDITY to `on_batch`; an error there
/// stops the import (what was handed over before stays handed over: the
/// caller commits per batch).
pub async fn read_history<F, Fut>(
    settings: &ImapSettings,
    tokens: Option<&TokenSource>,
    (since, checkpoint): (Option<NaiveDate>, Option<Checkpoint>),
    limits: &FetchLimits,
    mut on_batch: F,
) -> anyhow::Result<HistoryCount>
where
    F: FnMut(u32, Vec<FetchedMail>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let limit = Duration::from_secs(settings.timeout_seconds.max(1));
    let mut session = connect_with(settings, tokens).await?;
    let scope = (since, checkpoint);
    let result = read_all(&mut session, settings, scope, limits, limit, &mut on_batch).await;
    logout(&mut session, limit).await;
    result
}

async fn read_all<F, Fut>(
    session: &mut ImapSession,
    settings: &ImapSettings,
    (since, checkpoint): (Option<NaiveDate>, Option<Checkpoint>),
    limits: &FetchLimits,
    limit: Duration,
    on_batch: &mut F,
) -> anyhow::Result<HistoryCount>
where
    F: FnMut(u32, Vec<FetchedMail>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let folder = settings.mailbox.as_str();
    let examined = match tokio::time::timeout(limit, session.examine(folder)).await {
        Ok(result) => result.map_err(|e| imap_error(&format!("EXAMINE {folder}"), e))?,
        Err(_) => bail!(
            "no answer within {} s while examining {folder}",
            limit.as_secs()
        ),
    };
    let Some(uidvalidity) = examined.uid_validity else {
        bail!("EXAMINE {folder} gave no UIDVALIDITY (or the connection closed)");
    };
    let every = format!("UID SEARCH ALL{}", since_text(since));
    let (in_folder, _) = search(session, &every, limit).await?;
    let mut count = HistoryCount {
        in_folder: in_folder.len(),
        ..HistoryCount::default()
    };
    let Some(command) = history_search(since, checkpoint, uidvalidity) else {
        return Ok(count);
    };
    let (found, _) = search(session, &command, limit).await?;
    let uids: Vec<u32> = found.into_iter().collect();
    count.found = uids.len();
    let declared = sizes(session, &uids, limit).await?;
    for planned in batch::plan(&declared, limits) {
        let mails = fetch_batch(session, &planned, limit).await?;
        count.fetched += mails.len();
        if !mails.is_empty() {
            on_batch(uidvalidity, mails).await?;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_the_first_start_only_read_mail_is_history() {
        let day = NaiveDate::from_ymd_opt(2026, 2, 1);
        assert_eq!(
            history_search(day, None, 7).as_deref(),
            Some("UID SEARCH SEEN SINCE 1-Feb-2026")
        );
        assert_eq!(
            history_search(None, None, 7).as_deref(),
            Some("UID SEARCH SEEN")
        );
    }

    #[test]
    fn after_it_only_mail_at_or_below_the_checkpoint_is() {
        let at = |uidvalidity, last_uid| {
            Some(Checkpoint {
                uidvalidity,
                last_uid,
            })
        };
        assert_eq!(
            history_search(None, at(7, 40), 7).as_deref(),
            Some("UID SEARCH UID 1:40")
        );
        // Another UIDVALIDITY: the daemon reads the folder whole; UID 0: nothing below.
        assert_eq!(history_search(None, at(6, 40), 7), None);
        assert_eq!(history_search(None, at(7, 0), 7), None);
    }
}
