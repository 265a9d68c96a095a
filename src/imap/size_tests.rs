//! Size-bounded fetching against the scripted server (issue 17): bodies
//! are fetched in batches bounded by their declared RFC822.SIZE, a mail
//! over `limits.max_message_bytes` arrives as its header with its size, and
//! `delete` never removes such a mail from the server.

use super::super::FetchLimits;
use super::super::fake::FakeServer;
use super::{FakeSink, bounded, eventually, position, settings, start_with};
use crate::settings::AfterIngest;

/// A mail of about `body` bytes, its header section first.
fn sized_mail(uid: u32, body: usize) -> (Vec<u8>, Vec<u8>) {
    let header = format!("Message-ID: <s{uid}@test>\r\nSubject: sized {uid}\r\n\r\n").into_bytes();
    let whole = [header.as_slice(), "x".repeat(body).as_bytes(), b"\r\n"].concat();
    (header, whole)
}

fn limits(max_message_bytes: u64, batch_bytes: u64) -> FetchLimits {
    FetchLimits {
        max_message_bytes,
        batch_bytes,
        batch_mails: 50,
    }
}

#[tokio::test]
async fn bodies_are_fetched_in_batches_bounded_by_their_declared_size() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2, 3, 4, 5, 6], &[]).await;
        for uid in 1..=5 {
            server.set_raw(uid, sized_mail(uid, 1_000).1);
        }
        // Bigger than a whole batch: it still moves, alone.
        server.set_raw(6, sized_mail(6, 5_000).1);
        let sink = FakeSink::new(&server, None);
        let running = start_with(settings(&server), limits(1 << 20, 2_500), &sink);
        eventually("every mail is marked", || {
            (1..=6).all(|u| server.has_flag(u, "\\Seen"))
        })
        .await;
        assert_eq!(
            sink.batches(),
            vec![vec![1, 2], vec![3, 4], vec![5], vec![6]]
        );
        let events = server.events();
        let sizes = position(&events, "UID FETCH 1:6 (UID RFC822.SIZE)").expect("sizes asked");
        let first = position(&events, "UID FETCH 1:2 (UID BODY.PEEK[])").expect("first batch");
        assert!(
            sizes < first,
            "bodies fetched before their sizes: {events:?}"
        );
        assert!(
            position(&events, "UID FETCH 1:6 (UID BODY").is_none(),
            "{events:?}"
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_oversize_mail_arrives_as_its_header_with_its_declared_size() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2, 3], &[]).await;
        let (header, whole) = sized_mail(2, 20_000);
        server.set_raw(2, whole.clone());
        let sink = FakeSink::new(&server, None);
        let running = start_with(settings(&server), limits(8_192, 1 << 20), &sink);
        eventually("every mail is marked", || {
            (1..=3).all(|u| server.has_flag(u, "\\Seen"))
        })
        .await;
        assert_eq!(sink.batches(), vec![vec![1, 2, 3]]);
        let mails = sink.batches.lock().unwrap()[0].1.clone();
        assert_eq!(mails[1].raw, header, "only the header section");
        assert_eq!(mails[1].oversize, Some(whole.len() as u64));
        assert!(mails[0].oversize.is_none() && mails[2].oversize.is_none());
        let events = server.events();
        assert!(
            events.contains(&"UID FETCH 1,3 (UID BODY.PEEK[])".to_string()),
            "{events:?}"
        );
        assert!(
            events.contains(&"UID FETCH 2 (UID BODY.PEEK[HEADER]<0.262144>)".to_string()),
            "{events:?}"
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn with_delete_an_oversize_mail_is_flagged_seen_and_stays_on_the_server() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2, 3], &["UIDPLUS"]).await;
        let (_, whole) = sized_mail(2, 20_000);
        server.set_raw(2, whole.clone());
        let sink = FakeSink::new(&server, None);
        let mut settings = settings(&server);
        settings.after_ingest = AfterIngest::Delete;
        let running = start_with(settings, limits(8_192, 1 << 20), &sink);
        eventually("the others are deleted", || {
            server.state().messages.keys().eq([2].iter())
        })
        .await;
        eventually("the oversize one is seen", || server.has_flag(2, "\\Seen")).await;
        assert!(!server.has_flag(2, "\\Deleted"));
        assert_eq!(server.state().messages[&2].raw, whole, "kept whole");
        let events = server.events();
        assert!(events.contains(&"UID STORE 1,3 +FLAGS.SILENT (\\Deleted)".to_string()));
        assert!(events.contains(&"UID EXPUNGE 1,3".to_string()));
        let ingest = position(&events, "INGEST 1,2,3").expect("ingest");
        let seen = position(&events, "UID STORE 2 +FLAGS.SILENT (\\Seen)").expect("seen");
        assert!(ingest < seen, "marked before the commit: {events:?}");
        assert!(
            !events
                .iter()
                .any(|e| e.contains("EXPUNGE") && e.contains('2')),
            "{events:?}"
        );
        running.stop().await;
    })
    .await;
}
