//! Watching customers' INBOXes for the answers a benchmark waits for: one
//! tight-polling IMAP reader per customer, recording when the mail tagged
//! `… NAME-{i}{suffix}` in its subject was first seen. Shared by
//! `bench_latency` (the IMAP IDLE path) and `bench_lmtp` (LMTP and its echo
//! floor), so both clocks stop the same way.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;

use super::{Stack, imap_login};

/// When the answer to mail `i` was first seen.
pub type Arrivals = Arc<Mutex<BTreeMap<usize, Instant>>>;

/// One polling reader per customer; each ends once `expected` mails with
/// `suffix` in their subject have arrived across all readers.
pub async fn watch_inboxes(
    stack: &Stack,
    customers: &[String],
    suffix: &str,
    expected: usize,
    arrivals: &Arrivals,
    poll_ms: u64,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let mut readers = Vec::new();
    for user in customers {
        let mut session = imap_login(stack, user).await?;
        let mut next = session.select("INBOX").await?.uid_next.unwrap_or(1);
        let (arrivals, suffix) = (Arc::clone(arrivals), suffix.to_string());
        readers.push(tokio::spawn(async move {
            loop {
                let seen = Instant::now();
                let fetches: Vec<_> = session
                    .uid_fetch(
                        format!("{next}:*"),
                        "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
                    )
                    .await?
                    .try_collect()
                    .await?;
                while session.unsolicited_responses.try_recv().is_ok() {}
                let arrived = {
                    let mut a = arrivals.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    for fetch in fetches {
                        let Some(uid) = fetch.uid.filter(|u| *u >= next) else {
                            continue;
                        };
                        next = uid + 1;
                        if let Some(i) = fetch.header().and_then(|h| tagged(h, &suffix)) {
                            a.entry(i).or_insert(seen);
                        }
                    }
                    a.len()
                };
                if arrived >= expected {
                    session.logout().await?;
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_millis(poll_ms)).await;
            }
        }));
    }
    Ok(readers)
}

/// The number `i` of a subject "… NAME-{i}{suffix}".
fn tagged(header: &[u8], suffix: &str) -> Option<usize> {
    let text = String::from_utf8_lossy(header);
    let end = text.find(suffix)?;
    let start = text[..end].rfind('-')? + 1;
    text[start..end].parse().ok()
}
