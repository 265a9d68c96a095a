//! The first start of a mailbox (no checkpoint, issue 12) against the
//! scripted server: read mail is never fetched, unread mail is, the
//! checkpoint lands on the mailbox's highest UID in the transaction of the
//! last batch (or alone), and a restart fetches only what came after.

use super::super::fake::FakeServer;
use super::super::{Checkpoint, FetchLimits};
use super::{FakeSink, bounded, eventually, position, settings, start, start_with};
use crate::settings::AfterIngest;

fn checkpoint(sink: &FakeSink) -> Option<Checkpoint> {
    *sink.checkpoint.lock().unwrap()
}

fn fetched(events: &[String]) -> Vec<String> {
    let bodies = events.iter().filter(|e| e.contains("BODY.PEEK[]"));
    bodies.cloned().collect()
}

#[tokio::test]
async fn a_first_start_takes_the_unread_mail_only_and_a_restart_only_new_mail() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2, 3, 4, 5], &["IDLE"]).await;
        for uid in [1, 2, 4] {
            server.flag(uid, "\\Seen");
        }
        let sink = FakeSink::new(&server, None);
        let running = start(settings(&server), &sink);
        eventually("the unread mail is marked", || server.has_flag(5, "\\Seen")).await;
        eventually("IDLE", || server.events().contains(&"IDLE".to_string())).await;
        assert_eq!(sink.batches(), vec![vec![3, 5]]);
        let events = server.events();
        assert_eq!(fetched(&events), ["UID FETCH 3,5 (UID BODY.PEEK[])"]);
        let ingest = position(&events, "INGEST 3,5").expect("ingest");
        assert_eq!(events[ingest + 1], "CHECKPOINT 5", "{events:?}");
        let last_uid = 5;
        assert_eq!(
            checkpoint(&sink),
            Some(Checkpoint {
                uidvalidity: 7,
                last_uid
            })
        );

        // A mail arriving after the start is taken as usual.
        let new = server.deliver();
        eventually("the new mail", || sink.batches().len() == 2).await;
        assert_eq!(sink.batches()[1], vec![new]);
        running.stop().await;

        // A restart reads above the checkpoint: nothing old, only news.
        server.events.lock().unwrap().clear();
        let newer = server.deliver();
        let running = start(settings(&server), &sink);
        eventually("the newer mail", || sink.batches().len() == 3).await;
        assert_eq!(sink.batches()[2], vec![newer]);
        let events = server.events();
        assert!(position(&events, "UID SEARCH ALL").is_none(), "{events:?}");
        assert_eq!(
            fetched(&events),
            [format!("UID FETCH {newer} (UID BODY.PEEK[])")]
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_first_start_with_only_read_mail_records_the_checkpoint_alone() {
    bounded(async {
        let server = FakeServer::start(3, &[4, 9], &["IDLE"]).await;
        server.flag(4, "\\Seen");
        server.flag(9, "\\Seen");
        let sink = FakeSink::new(&server, None);
        let running = start(settings(&server), &sink);
        eventually("IDLE", || server.events().contains(&"IDLE".to_string())).await;
        assert_eq!(sink.batches(), vec![Vec::<u32>::new()]);
        let events = server.events();
        assert!(position(&events, "UID FETCH").is_none(), "{events:?}");
        assert!(position(&events, "UID STORE").is_none(), "{events:?}");
        let last_uid = 9;
        assert_eq!(
            checkpoint(&sink),
            Some(Checkpoint {
                uidvalidity: 3,
                last_uid
            })
        );
        assert!(events.contains(&"UID SEARCH UID 10:*".to_string()));
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn only_the_last_batch_of_a_first_start_records_the_checkpoint() {
    bounded(async {
        let uids: Vec<u32> = (1..=130).collect();
        let server = FakeServer::start(7, &uids, &["IDLE"]).await;
        for uid in 121..=130 {
            server.flag(uid, "\\Seen");
        }
        let sink = FakeSink::new(&server, None);
        let running = start_with(settings(&server), FetchLimits::new(1 << 20), &sink);
        eventually("IDLE", || server.events().contains(&"IDLE".to_string())).await;
        assert_eq!(sink.batches().len(), 3, "120 unread mails in batches of 50");
        let events = server.events();
        let marks: Vec<&String> = events
            .iter()
            .filter(|e| e.starts_with("CHECKPOINT"))
            .collect();
        assert_eq!(marks, ["CHECKPOINT 130"], "{events:?}");
        let last = position(&events, "INGEST 101,").expect("the last batch");
        assert_eq!(events[last + 1], "CHECKPOINT 130");
        assert!(position(&events, "UID FETCH 121").is_none(), "{events:?}");
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_first_start_records_nothing_and_is_tried_again() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2, 3], &[]).await;
        server.flag(1, "\\Seen");
        let sink = FakeSink::new(&server, None);
        sink.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let running = start(settings(&server), &sink);
        eventually("a retry", || sink.batches().len() >= 2).await;
        assert_eq!(checkpoint(&sink), None);
        assert!(!server.has_flag(2, "\\Seen"));
        sink.fail.store(false, std::sync::atomic::Ordering::SeqCst);
        eventually("marked after recovery", || server.has_flag(3, "\\Seen")).await;
        assert!(sink.batches().iter().all(|b| b == &vec![2, 3]));
        assert_eq!(checkpoint(&sink).map(|c| c.last_uid), Some(3));
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn with_move_the_read_mail_left_alone_is_never_moved_on_reconnect() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2, 3], &["MOVE"]).await;
        server.flag(1, "\\Seen");
        server.flag(2, "\\Seen");
        let sink = FakeSink::new(&server, None);
        let mut settings = settings(&server);
        settings.after_ingest = AfterIngest::Move("Done".into());
        let running = start(settings.clone(), &sink);
        eventually("3 moved", || !server.state().messages.contains_key(&3)).await;
        running.stop().await;
        // The next session's catch-up looks below the checkpoint (3).
        let running = start(settings, &sink);
        let caught_up = "UID SEARCH UID 1:3 UNSEEN UNDELETED".to_string();
        eventually("the catch-up", || server.events().contains(&caught_up)).await;
        running.stop().await;
        let st = server.state();
        assert_eq!(st.messages.keys().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(st.folders.get("Done").map(Vec::len), Some(1));
    })
    .await;
}
