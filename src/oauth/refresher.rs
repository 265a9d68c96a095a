//! The background refresher of a token source: fetches the first access
//! token at start (so `/healthz` knows at once whether tokens come) and a
//! new one whenever the cached one is due, so a revoked refresh token is
//! noticed even while IMAP idles on an open session and nothing is sent.
//! It holds the source weakly and ends when the daemon drops it. It must
//! not decide anything itself: failures are logged, recorded and paced by
//! the source.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::token::TokenSource;

/// The shortest sleep between two looks (a provider answering with
/// `expires_in: 0` must not make this a busy loop).
const MIN_PAUSE: Duration = Duration::from_secs(1);

/// Starts the refresher of `source` on the current tokio runtime (none:
/// no refresher, tokens are then fetched on use only).
pub(super) fn spawn(source: &Arc<TokenSource>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(run(Arc::downgrade(source)));
}

async fn run(source: Weak<TokenSource>) {
    let mut first = true;
    loop {
        let Some(strong) = source.upgrade() else {
            return;
        };
        let wait = strong.next_check().await;
        drop(strong);
        let wait = if first { wait } else { wait.max(MIN_PAUSE) };
        first = false;
        tokio::time::sleep(wait).await;
        let Some(strong) = source.upgrade() else {
            return;
        };
        // A failure is logged and recorded by the source.
        let _ = strong.access_token().await;
    }
}
