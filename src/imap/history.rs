//! History: reads the mail already in a folder for `postdesk import`, all
//! of it or what arrived since a date, strictly read-only: the folder is
//! EXAMINEd and bodies fetched with BODY.PEEK, so no flag changes, nothing
//! moves and no checkpoint is touched. Batches are planned by declared size
//! as the watcher's are, so a mailbox of years holds at most one batch in
//! memory. It must not store, parse or decide anything: each batch goes to
//! the caller's `on_batch`.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use chrono::NaiveDate;

use super::FetchedMail;
use super::batch::{self, FetchLimits};
use super::command::imap_error;
use super::connect::{ImapSession, connect_with, logout};
use super::mailbox::{fetch_batch, search, sizes};
use crate::oauth::TokenSource;
use crate::settings::ImapSettings;

/// What one import read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCount {
    /// Messages found by the search.
    pub found: usize,
    /// Messages handed to `on_batch` (whole or, over the size limit, header only).
    pub fetched: usize,
}

/// The IMAP SEARCH for `since` (RFC 3501 date-text: `1-Feb-2026`), or ALL.
pub fn search_command(since: Option<NaiveDate>) -> String {
    match since {
        Some(day) => format!("UID SEARCH SINCE {}", day.format("%-d-%b-%Y")),
        None => "UID SEARCH ALL".to_string(),
    }
}

/// Reads every mail of `settings.mailbox` (since `since`), oldest UID
/// first, logging in as `settings.auth` says (`tokens` for XOAUTH2), and hands each batch with the folder's UIDVALIDITY to
/// `on_batch`; an error there stops the import (what was handed over
/// before stays handed over: the caller commits per batch).
pub async fn read_history<F, Fut>(
    settings: &ImapSettings,
    tokens: Option<&TokenSource>,
    since: Option<NaiveDate>,
    limits: &FetchLimits,
    mut on_batch: F,
) -> anyhow::Result<HistoryCount>
where
    F: FnMut(u32, Vec<FetchedMail>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let limit = Duration::from_secs(settings.timeout_seconds.max(1));
    let mut session = connect_with(settings, tokens).await?;
    let result = read_all(&mut session, settings, since, limits, limit, &mut on_batch).await;
    logout(&mut session, limit).await;
    result
}

async fn read_all<F, Fut>(
    session: &mut ImapSession,
    settings: &ImapSettings,
    since: Option<NaiveDate>,
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
    let (found, _) = search(session, &search_command(since), limit).await?;
    let uids: Vec<u32> = found.into_iter().collect();
    let mut count = HistoryCount {
        found: uids.len(),
        fetched: 0,
    };
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
    fn the_search_names_the_day_as_imap_writes_it() {
        let day = NaiveDate::from_ymd_opt(2026, 2, 1).unwrap();
        assert_eq!(search_command(Some(day)), "UID SEARCH SINCE 1-Feb-2026");
        assert_eq!(search_command(None), "UID SEARCH ALL");
    }
}
