//! The selected mailbox: SELECT and its UIDVALIDITY, finding UIDs above the
//! checkpoint, asking their sizes, fetching raw messages (or only the header
//! of an oversize one) in batches planned by `batch.rs`, and marking committed
//! messages as `after_ingest` says (flag, move or delete). Every command has
//! a timeout and a checked completion. It must not wait for new mail, retry,
//! talk to the sink or decide what has been committed: callers pass the
//! UIDs that are safe to mark.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context as _, bail};
use async_imap::imap_proto::{AttributeValue, MailboxDatum, Response};

use super::FetchedMail;
use super::batch::{Batch, HEADER_BYTES};
use super::command::{
    Caps, Refused, capabilities, imap_error, is_refusal, run_checked, uid_set, within,
};
use super::connect::ImapSession;
use crate::settings::AfterIngest;

/// How many messages one `UID FETCH` asks for.
pub(crate) const FETCH_BATCH: usize = 50;

/// How many UIDs one `UID FETCH … (RFC822.SIZE)` asks for (keeps the
/// command line short when the UIDs are sparse).
const SIZE_BATCH: usize = 1000;

/// How long the read-only helpers for tests and tools may take per step.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A mailbox selected on a session, with what the server can do.
#[derive(Debug)]
pub(crate) struct Selected {
    pub name: String,
    pub uidvalidity: u32,
    pub caps: Caps,
    /// The `move:` folder was created (or found) on this session.
    folder_ready: bool,
}

/// Asks CAPABILITY, then SELECTs `name`; the server must report UIDVALIDITY.
pub(crate) async fn select(
    session: &mut ImapSession,
    name: &str,
    limit: Duration,
) -> anyhow::Result<Selected> {
    let caps = capabilities(session, limit).await?;
    let what = format!("selecting {name}");
    let mailbox = match tokio::time::timeout(limit, session.select(name)).await {
        Ok(result) => result.map_err(|e| imap_error(&format!("SELECT {name}"), e))?,
        Err(_) => bail!("no answer within {} s while {what}", limit.as_secs()),
    };
    // async-imap returns an empty Mailbox when the connection closes
    // mid-SELECT, so a missing UIDVALIDITY is also how a drop shows here.
    let Some(uidvalidity) = mailbox.uid_validity else {
        bail!("SELECT {name} gave no UIDVALIDITY (or the connection closed)");
    };
    Ok(Selected {
        name: name.to_string(),
        uidvalidity,
        caps,
        folder_ready: false,
    })
}

/// UIDs above `after`, ascending, and whether an EXISTS came with the
/// answer. `UID n:*` always matches the highest UID even when it is below
/// `n` (RFC 3501 6.4.8), so the result is filtered.
pub(crate) async fn uids_after(
    session: &mut ImapSession,
    after: u32,
    limit: Duration,
) -> anyhow::Result<(Vec<u32>, bool)> {
    let command = format!("UID SEARCH UID {}:*", after.saturating_add(1));
    let (found, saw_exists) = search(session, &command, limit).await?;
    let uids = found.into_iter().filter(|&uid| uid > after).collect();
    Ok((uids, saw_exists))
}

/// What a first start (no checkpoint) sees of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FirstLook {
    /// The highest UID in the mailbox (0 when empty): the checkpoint once
    /// the unread mails are stored.
    pub top: u32,
    /// How many messages are at or below `top`.
    pub total: usize,
    /// The unread ones among them, ascending: the only ones taken.
    pub unseen: Vec<u32>,
}

/// Every UID, then the unread ones at or below the highest. A mail that
/// arrives between the two searches is above `top` and is fetched later
/// as any new mail; one read meanwhile is left alone.
pub(crate) async fn first_look(
    session: &mut ImapSession,
    limit: Duration,
) -> anyhow::Result<FirstLook> {
    let (all, _) = search(session, "UID SEARCH ALL", limit).await?;
    let Some(&top) = all.last() else {
        return Ok(FirstLook {
            top: 0,
            total: 0,
            unseen: Vec::new(),
        });
    };
    let command = format!("UID SEARCH UID 1:{top} UNSEEN");
    let (unseen, _) = search(session, &command, limit).await?;
    Ok(FirstLook {
        top,
        total: all.len(),
        unseen: unseen.into_iter().filter(|&uid| uid <= top).collect(),
    })
}

pub(crate) async fn search(
    session: &mut ImapSession,
    command: &str,
    limit: Duration,
) -> anyhow::Result<(BTreeSet<u32>, bool)> {
    let mut found = BTreeSet::new();
    let mut saw_exists = false;
    run_checked(session, limit, command, |r| match r {
        Response::MailboxData(MailboxDatum::Search(ids)) => found.extend(ids.iter().copied()),
        Response::MailboxData(MailboxDatum::Exists(_)) => saw_exists = true,
        _ => {}
    })
    .await?;
    Ok((found, saw_exists))
}

/// Fetches the raw messages `uids` (without setting \Seen), ascending.
/// UIDs the server no longer has are simply absent from the result.
pub(crate) async fn fetch(
    session: &mut ImapSession,
    uids: &[u32],
    limit: Duration,
) -> anyhow::Result<Vec<FetchedMail>> {
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: BTreeSet<u32> = uids.iter().copied().collect();
    let mut got: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let command = format!("UID FETCH {} (UID BODY.PEEK[])", uid_set(uids));
    run_checked(session, limit, &command, |r| {
        if let Response::Fetch(_, attrs) = r
            && let Some((uid, raw)) = uid_and_body(attrs)
            && wanted.contains(&uid)
        {
            got.insert(uid, raw.to_vec());
        }
    })
    .await?;
    Ok(got
        .into_iter()
        .map(|(uid, raw)| FetchedMail::whole(uid, raw))
        .collect())
}

/// The declared size (RFC822.SIZE) of each of `uids`, ascending; `None`
/// where the server gave none (e.g. the mail was expunged meanwhile).
pub(crate) async fn sizes(
    session: &mut ImapSession,
    uids: &[u32],
    limit: Duration,
) -> anyhow::Result<Vec<(u32, Option<u64>)>> {
    let mut known: BTreeMap<u32, u64> = BTreeMap::new();
    for chunk in uids.chunks(SIZE_BATCH) {
        let command = format!("UID FETCH {} (UID RFC822.SIZE)", uid_set(chunk));
        run_checked(session, limit, &command, |r| {
            if let Response::Fetch(_, attrs) = r {
                let uid = attrs.iter().find_map(|a| match a {
                    AttributeValue::Uid(uid) => Some(*uid),
                    _ => None,
                });
                let size = attrs.iter().find_map(|a| match a {
                    AttributeValue::Rfc822Size(size) => Some(u64::from(*size)),
                    _ => None,
                });
                if let (Some(uid), Some(size)) = (uid, size) {
                    known.insert(uid, size);
                }
            }
        })
        .await?;
    }
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    Ok(sorted
        .into_iter()
        .map(|uid| (uid, known.get(&uid).copied()))
        .collect())
}

/// Fetches one planned batch: the whole mails, then the header sections
/// (at most [`HEADER_BYTES`] each) of the oversize ones; ascending by UID.
pub(crate) async fn fetch_batch(
    session: &mut ImapSession,
    batch: &Batch,
    limit: Duration,
) -> anyhow::Result<Vec<FetchedMail>> {
    let mut mails = fetch(session, &batch.whole, limit).await?;
    if !batch.header_only.is_empty() {
        let declared: BTreeMap<u32, u64> = batch.header_only.iter().copied().collect();
        let uids: Vec<u32> = declared.keys().copied().collect();
        let command = format!(
            "UID FETCH {} (UID BODY.PEEK[HEADER]<0.{HEADER_BYTES}>)",
            uid_set(&uids)
        );
        run_checked(session, limit, &command, |r| {
            if let Response::Fetch(_, attrs) = r
                && let Some((uid, header)) = uid_and_header(attrs)
                && let Some(&size) = declared.get(&uid)
            {
                mails.push(FetchedMail {
                    uid,
                    raw: header.to_vec(),
                    oversize: Some(size),
                });
            }
        })
        .await?;
        mails.sort_by_key(|m| m.uid);
        mails.dedup_by_key(|m| m.uid);
    }
    Ok(mails)
}

fn uid_and_header<'a>(attrs: &'a [AttributeValue<'_>]) -> Option<(u32, &'a [u8])> {
    use async_imap::imap_proto::{MessageSection, SectionPath};
    let uid = attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(uid) => Some(*uid),
        _ => None,
    })?;
    let header = attrs.iter().find_map(|a| match a {
        AttributeValue::BodySection {
            section: Some(SectionPath::Full(MessageSection::Header)),
            data: Some(data),
            ..
        }
        | AttributeValue::Rfc822Header(Some(data)) => Some(data.as_ref()),
        _ => None,
    })?;
    Some((uid, header))
}

fn uid_and_body<'a>(attrs: &'a [AttributeValue<'_>]) -> Option<(u32, &'a [u8])> {
    let uid = attrs.iter().find_map(|a| match a {
        AttributeValue::Uid(uid) => Some(*uid),
        _ => None,
    })?;
    let body = attrs.iter().find_map(|a| match a {
        AttributeValue::BodySection {
            section: None,
            data: Some(data),
            ..
        }
        | AttributeValue::Rfc822(Some(data)) => Some(data.as_ref()),
        _ => None,
    })?;
    Some((uid, body))
}

/// Marks committed messages as `after` says. A refusal (`NO`/`BAD`, e.g. a
/// folder that cannot be created) is returned as [`super::Refused`]: the
/// connection is still good and the caller may go on.
pub(crate) async fn mark(
    session: &mut ImapSession,
    selected: &mut Selected,
    after: &AfterIngest,
    uids: &[u32],
    limit: Duration,
) -> anyhow::Result<()> {
    if uids.is_empty() {
        return Ok(());
    }
    let set = uid_set(uids);
    match after {
        AfterIngest::Seen => {
            let command = format!("UID STORE {set} +FLAGS.SILENT (\\Seen)");
            run_checked(session, limit, &command, |_| {}).await
        }
        AfterIngest::Delete => delete(session, selected, &set, limit).await,
        AfterIngest::Move(folder) => {
            ensure_folder(session, selected, folder, limit).await?;
            if selected.caps.move_ {
                let command = format!("UID MOVE {set} {}", quote(folder)?);
                run_checked(session, limit, &command, |_| {}).await
            } else {
                let command = format!("UID COPY {set} {}", quote(folder)?);
                run_checked(session, limit, &command, |_| {}).await?;
                delete(session, selected, &set, limit).await
            }
        }
    }
}

/// `\Deleted`, then `UID EXPUNGE` (UIDPLUS) or a plain `EXPUNGE`, which also
/// removes what other clients flagged \Deleted: the documented fallback.
async fn delete(
    session: &mut ImapSession,
    selected: &Selected,
    set: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    let command = format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)");
    run_checked(session, limit, &command, |_| {}).await?;
    let command = if selected.caps.uidplus {
        format!("UID EXPUNGE {set}")
    } else {
        "EXPUNGE".to_string()
    };
    run_checked(session, limit, &command, |_| {}).await
}

/// CREATEs the move folder once per session; "already exists" is fine.
async fn ensure_folder(
    session: &mut ImapSession,
    selected: &mut Selected,
    folder: &str,
    limit: Duration,
) -> anyhow::Result<()> {
    if selected.folder_ready {
        return Ok(());
    }
    let command = format!("CREATE {}", quote(folder)?);
    match run_checked(session, limit, &command, |_| {}).await {
        Ok(()) => tracing::info!("Created the IMAP folder {folder} for processed mail."),
        // A NO here is "already exists" on every server seen; any other
        // reason shows up on the MOVE/COPY that follows.
        Err(err) if is_refusal(&err) => tracing::debug!("{err}"),
        Err(err) => return Err(err),
    }
    selected.folder_ready = true;
    Ok(())
}

/// Messages at or below the committed checkpoint that are still waiting for
/// their mark, e.g. because the connection dropped between commit and
/// STORE. Only for `seen` and `move:` — `delete` never removes a message
/// this session did not itself see committed. For `move:` only unread
/// ones: read mail below the checkpoint is what a first start left alone
/// (we fetch with BODY.PEEK, so what we stored is still unread).
pub(crate) async fn unmarked_committed(
    session: &mut ImapSession,
    after: &AfterIngest,
    last_uid: u32,
    limit: Duration,
) -> anyhow::Result<Vec<u32>> {
    if last_uid == 0 {
        return Ok(Vec::new());
    }
    let command = match after {
        AfterIngest::Seen => format!("UID SEARCH UID 1:{last_uid} UNSEEN"),
        AfterIngest::Move(_) => format!("UID SEARCH UID 1:{last_uid} UNSEEN UNDELETED"),
        AfterIngest::Delete => return Ok(Vec::new()),
    };
    let (found, _) = search(session, &command, limit).await?;
    Ok(found.into_iter().filter(|&uid| uid <= last_uid).collect())
}

/// Every message in `mailbox`, read-only (EXAMINE), for tests and tools.
pub async fn read_mailbox(
    session: &mut ImapSession,
    mailbox: &str,
) -> anyhow::Result<Vec<FetchedMail>> {
    let what = format!("examining {mailbox}");
    within(TOOL_TIMEOUT, &what, async {
        session
            .examine(mailbox)
            .await
            .map_err(|e| imap_error(&format!("EXAMINE {mailbox}"), e))
    })
    .await?;
    let (found, _) = search(session, "UID SEARCH ALL", TOOL_TIMEOUT).await?;
    let uids: Vec<u32> = found.into_iter().collect();
    let mut mails = Vec::with_capacity(uids.len());
    for chunk in uids.chunks(FETCH_BATCH) {
        mails.extend(
            fetch(session, chunk, TOOL_TIMEOUT)
                .await
                .with_context(|| format!("while reading {mailbox}"))?,
        );
    }
    Ok(mails)
}

/// An IMAP quoted string (mailbox names are passed as given in the config);
/// CR, LF and NUL cannot be quoted and would split the command.
fn quote(value: &str) -> anyhow::Result<String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(Refused {
            command: format!("using the folder {value:?}"),
            reply: "a folder name cannot hold a line break or NUL".to_string(),
        }
        .into());
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    Ok(format!("\"{escaped}\""))
}
