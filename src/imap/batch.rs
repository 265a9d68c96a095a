//! Fetch planning: splits the UIDs to fetch into batches bounded by the
//! sizes the server declares (RFC822.SIZE), so that one batch never holds
//! much more than [`FetchLimits::batch_bytes`] of mail, and picks out the
//! mails over `limits.max_message_bytes`, of which only the header is
//! fetched. Pure: no I/O; the fetching is `mailbox.rs`'s.

/// Declared bytes of mail one body `UID FETCH` may ask for. With the
/// pipeline (one batch in the sink while the next is fetched) about twice
/// this is in memory at once. A batch of 50 everyday mails is well under
/// it; where large mails cluster, 1 MB rather than 32 MB took the ingest
/// benchmark's peak RSS from 35 to 32 MB at the same rate (issue 16: the
/// fetched copies of two batches were the largest item at the peak).
pub const BATCH_BYTES: u64 = 1024 * 1024;

/// How much of an oversize mail's header section is fetched (a partial
/// FETCH): the refusal notice reads no more than this either.
pub const HEADER_BYTES: u64 = 256 * 1024;

/// What bounds the memory of fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// A mail declared larger is fetched as its header only
    /// (`limits.max_message_bytes`).
    pub max_message_bytes: u64,
    /// Declared bytes per batch (a single larger mail still makes a batch).
    pub batch_bytes: u64,
    /// Mails per batch.
    pub batch_mails: usize,
}

impl FetchLimits {
    /// The daemon's limits for a given `limits.max_message_bytes`.
    pub fn new(max_message_bytes: u64) -> FetchLimits {
        FetchLimits {
            max_message_bytes,
            batch_bytes: BATCH_BYTES,
            batch_mails: super::mailbox::FETCH_BATCH,
        }
    }
}

/// One batch: consecutive UIDs, fetched and handed to the sink together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Fetched whole.
    pub whole: Vec<u32>,
    /// Over the size limit: only the header, with the declared size.
    pub header_only: Vec<(u32, u64)>,
}

impl Batch {
    fn len(&self) -> usize {
        self.whole.len() + self.header_only.len()
    }

    /// The highest UID of the batch (where the cursor goes once committed).
    pub fn last_uid(&self) -> Option<u32> {
        let headers = self.header_only.iter().map(|&(uid, _)| uid);
        self.whole.iter().copied().chain(headers).max()
    }
}

/// Splits `sizes` (UIDs ascending, each with its declared size; `None`
/// where the server gave none, e.g. a mail expunged meanwhile: it is asked
/// for whole and is simply absent if gone) into batches in UID order.
pub(crate) fn plan(sizes: &[(u32, Option<u64>)], limits: &FetchLimits) -> Vec<Batch> {
    let mut batches = Vec::new();
    let mut current = Batch::default();
    let mut bytes = 0u64;
    for &(uid, size) in sizes {
        let size = size.unwrap_or(0);
        let oversize = size > limits.max_message_bytes;
        let cost = if oversize {
            size.min(HEADER_BYTES)
        } else {
            size
        };
        let full = current.len() >= limits.batch_mails.max(1)
            || bytes.saturating_add(cost) > limits.batch_bytes;
        // Always at least one mail per batch, so a big one still moves.
        if full && current.len() > 0 {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes = bytes.saturating_add(cost);
        if oversize {
            current.header_only.push((uid, size));
        } else {
            current.whole.push(uid);
        }
    }
    if current.len() > 0 {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    /// The rule's limits (the daemon's batch is smaller; see below).
    fn limits() -> FetchLimits {
        FetchLimits {
            max_message_bytes: 25 * MB,
            batch_bytes: 32 * MB,
            batch_mails: 50,
        }
    }

    #[test]
    fn the_daemon_fetches_everyday_mail_fifty_at_a_time_and_large_mail_by_the_megabyte() {
        let daemon = FetchLimits::new(25 * MB);
        let small: Vec<(u32, Option<u64>)> = (1..=100).map(|u| (u, Some(8_000))).collect();
        let lens: Vec<usize> = plan(&small, &daemon).iter().map(Batch::len).collect();
        assert_eq!(lens, [50, 50]);
        // Mails with a 200 KB attachment: four fit a megabyte, not fifty.
        let large: Vec<(u32, Option<u64>)> = (1..=10).map(|u| (u, Some(250_000))).collect();
        let lens: Vec<usize> = plan(&large, &daemon).iter().map(Batch::len).collect();
        assert_eq!(lens, [4, 4, 2]);
    }

    #[test]
    fn fifty_mails_of_25_mb_are_not_one_batch() {
        let sizes: Vec<(u32, Option<u64>)> = (1..=50).map(|u| (u, Some(25 * MB))).collect();
        let batches = plan(&sizes, &limits());
        assert_eq!(batches.len(), 50, "one 25 MB mail per batch");
        assert!(batches.iter().all(|b| b.whole.len() == 1));
        let uids: Vec<u32> = batches.iter().flat_map(|b| b.whole.clone()).collect();
        assert_eq!(uids, (1..=50).collect::<Vec<_>>(), "every mail, in order");
    }

    #[test]
    fn batches_are_bounded_by_bytes_and_by_count() {
        let mut sizes: Vec<(u32, Option<u64>)> = (1..=4).map(|u| (u, Some(10 * MB))).collect();
        sizes.extend((5..=124).map(|u| (u, Some(2_000))));
        let batches = plan(&sizes, &limits());
        let lens: Vec<usize> = batches.iter().map(Batch::len).collect();
        // 3 × 10 MB fit 32 MB; the 4th starts a batch that fills to 50.
        assert_eq!(lens, [3, 50, 50, 21]);
        assert_eq!(batches[0].last_uid(), Some(3));
        assert_eq!(batches[3].last_uid(), Some(124));
    }

    #[test]
    fn a_mail_over_the_batch_size_still_moves_alone() {
        let mut limits = limits();
        limits.max_message_bytes = 100 * MB;
        let sizes = [(1, Some(1_000)), (2, Some(40 * MB)), (3, Some(1_000))];
        let batches = plan(&sizes, &limits);
        let whole: Vec<Vec<u32>> = batches.iter().map(|b| b.whole.clone()).collect();
        assert_eq!(whole, [vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn oversize_mails_are_header_only_and_cost_their_header() {
        let sizes = [
            (7, Some(30 * MB)),
            (8, Some(5_000)),
            (9, Some(26 * MB)),
            (10, None),
        ];
        let batches = plan(&sizes, &limits());
        assert_eq!(
            batches,
            [Batch {
                whole: vec![8, 10],
                header_only: vec![(7, 30 * MB), (9, 26 * MB)],
            }]
        );
        assert_eq!(batches[0].last_uid(), Some(10));
        assert!(plan(&[], &limits()).is_empty());
    }
}
