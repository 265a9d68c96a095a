//! Tests of the watch loop against the scripted server in `fake.rs`: what is
//! fetched, when marks are sent relative to the sink's commit, UIDVALIDITY
//! changes, hung servers, IDLE and shutdown. Each test is bounded in time.
//! The size-bounded fetching is tested in `size_tests.rs`, the first start
//! of a mailbox in `first_tests.rs`.

#[path = "size_tests.rs"]
mod sizes;

#[path = "first_tests.rs"]
mod first;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::fake::{FakeServer, raw_mail};
use super::{
    Checkpoint, FetchLimits, FetchedMail, ImapStatus, MailSink, connect, read_mailbox, run,
};
use crate::settings::{AfterIngest, ImapSettings, Secret, TlsMode};

pub(super) struct FakeSink {
    checkpoint: Mutex<Option<Checkpoint>>,
    fail: AtomicBool,
    events: Arc<Mutex<Vec<String>>>,
    pub batches: Mutex<Vec<(u32, Vec<FetchedMail>)>>,
    /// The UIDs of each batch announced as the next (`upcoming`).
    announced: Mutex<Vec<Vec<u32>>>,
}

impl FakeSink {
    pub fn new(server: &FakeServer, checkpoint: Option<Checkpoint>) -> Arc<FakeSink> {
        Arc::new(FakeSink {
            checkpoint: Mutex::new(checkpoint),
            fail: AtomicBool::new(false),
            events: server.events.clone(),
            batches: Mutex::new(Vec::new()),
            announced: Mutex::new(Vec::new()),
        })
    }

    /// The UIDs of each batch handed over, successful or not.
    pub fn batches(&self) -> Vec<Vec<u32>> {
        let batches = self.batches.lock().unwrap();
        batches
            .iter()
            .map(|(_, mails)| mails.iter().map(|m| m.uid).collect())
            .collect()
    }
}

impl MailSink for FakeSink {
    async fn checkpoint(&self, _mailbox: &str) -> anyhow::Result<Option<Checkpoint>> {
        Ok(*self.checkpoint.lock().unwrap())
    }

    async fn ingest_batch(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        mails: Arc<[FetchedMail]>,
        checkpoint: Option<u32>,
    ) -> anyhow::Result<()> {
        assert_eq!(mailbox, "INBOX");
        let uids: Vec<String> = mails.iter().map(|m| m.uid.to_string()).collect();
        self.batches
            .lock()
            .unwrap()
            .push((uidvalidity, mails.to_vec()));
        if self.fail.load(Ordering::SeqCst) {
            self.events
                .lock()
                .unwrap()
                .push(format!("INGEST FAILED {}", uids.join(",")));
            anyhow::bail!("database is locked");
        }
        let mut events = self.events.lock().unwrap();
        events.push(format!("INGEST {}", uids.join(",")));
        if let Some(last_uid) = checkpoint {
            events.push(format!("CHECKPOINT {last_uid}"));
            let mut stored = self.checkpoint.lock().unwrap();
            let kept = stored.filter(|c| c.uidvalidity == uidvalidity);
            let last_uid = kept.map_or(last_uid, |c| c.last_uid.max(last_uid));
            *stored = Some(Checkpoint {
                uidvalidity,
                last_uid,
            });
        }
        Ok(())
    }

    fn upcoming(&self, mails: &Arc<[FetchedMail]>) {
        let uids = mails.iter().map(|m| m.uid).collect();
        self.announced.lock().unwrap().push(uids);
    }
}

pub(super) fn settings(server: &FakeServer) -> ImapSettings {
    ImapSettings {
        enabled: true,
        auth: crate::settings::AuthMethod::Password,
        host: "127.0.0.1".into(),
        port: server.addr.port(),
        tls: TlsMode::None,
        username: "tickets".into(),
        password: Secret::new("secret"),
        mailbox: "INBOX".into(),
        after_ingest: AfterIngest::Seen,
        poll_seconds: 1,
        idle: true,
        idle_refresh_seconds: 60,
        ca_file: String::new(),
        timeout_seconds: 2,
    }
}

pub(super) struct Running {
    token: CancellationToken,
    handle: JoinHandle<()>,
    status: Arc<ImapStatus>,
}

fn start(settings: ImapSettings, sink: &Arc<FakeSink>) -> Running {
    start_with(settings, FetchLimits::new(25 * 1024 * 1024), sink)
}

pub(super) fn start_with(
    settings: ImapSettings,
    limits: FetchLimits,
    sink: &Arc<FakeSink>,
) -> Running {
    let token = CancellationToken::new();
    let status = Arc::new(ImapStatus::new());
    let handle = tokio::spawn(run(
        settings,
        limits,
        sink.clone(),
        status.clone(),
        token.clone(),
    ));
    Running {
        token,
        handle,
        status,
    }
}

impl Running {
    /// Cancels and returns how long `run` took to return.
    pub async fn stop(self) -> Duration {
        let started = Instant::now();
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.handle)
            .await
            .expect("run() did not return after shutdown")
            .expect("run() panicked");
        started.elapsed()
    }
}

/// Polls `cond` every 20 ms for up to 6 s.
pub(super) async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(6);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every test runs under a hard limit.
pub(super) async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(20), test)
        .await
        .expect("test took too long");
}

pub(super) fn position(events: &[String], prefix: &str) -> Option<usize> {
    events.iter().position(|e| e.starts_with(prefix))
}

#[tokio::test]
async fn fetches_above_the_checkpoint_and_marks_seen_only_after_commit() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2, 3], &[]).await;
        server.flag(1, "\\Seen");
        let checkpoint = Checkpoint {
            uidvalidity: 7,
            last_uid: 1,
        };
        let sink = FakeSink::new(&server, Some(checkpoint));
        let running = start(settings(&server), &sink);
        eventually("the batch is marked", || server.has_flag(3, "\\Seen")).await;

        assert_eq!(sink.batches(), vec![vec![2, 3]]);
        let raws: Vec<Vec<u8>> = sink.batches.lock().unwrap()[0]
            .1
            .iter()
            .map(|m| m.raw.clone())
            .collect();
        assert_eq!(raws, vec![raw_mail(2), raw_mail(3)]);
        let events = server.events();
        assert!(
            events.contains(&"UID SEARCH UID 2:*".to_string()),
            "{events:?}"
        );
        assert!(events.contains(&"UID FETCH 2:3 (UID BODY.PEEK[])".to_string()));
        let ingest = position(&events, "INGEST 2,3").expect("ingest event");
        let store = position(&events, "UID STORE 2:3 +FLAGS.SILENT (\\Seen)").expect("store");
        assert!(ingest < store, "marked before the commit: {events:?}");
        assert!(running.status.is_connected());
        assert_eq!(running.status.fetched_total(), 2);
        assert!(running.status.last_fetch_unix() > 0);
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn batches_are_pipelined_and_each_is_marked_only_after_its_commit() {
    bounded(async {
        let uids: Vec<u32> = (1..=120).collect();
        let server = FakeServer::start(7, &uids, &[]).await;
        let sink = FakeSink::new(&server, None);
        let running = start(settings(&server), &sink);
        eventually("every mail is marked", || {
            uids.iter().all(|&u| server.has_flag(u, "\\Seen"))
        })
        .await;
        let batches: Vec<Vec<u32>> = vec![
            (1..=50).collect(),
            (51..=100).collect(),
            (101..=120).collect(),
        ];
        assert_eq!(sink.batches(), batches);
        let events = server.events();
        for (first, last) in [(1, 50), (51, 100), (101, 120)] {
            let ingest = position(&events, &format!("INGEST {first},")).expect("ingest");
            let store =
                position(&events, &format!("UID STORE {first}:{last} +FLAGS")).expect("store");
            assert!(
                ingest < store,
                "{first}:{last} marked before its commit: {events:?}"
            );
        }
        // The next batch is fetched while the sink stores the one before.
        let second = position(&events, "UID FETCH 51:100").expect("second fetch");
        let first_marked = position(&events, "UID STORE 1:50").expect("first store");
        assert!(second < first_marked, "not pipelined: {events:?}");
        // Each batch fetched while another was stored was announced to the
        // sink as the next one (so it could start reading it early).
        assert_eq!(*sink.announced.lock().unwrap(), batches[1..]);
        assert_eq!(running.status.fetched_total(), 120);
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_failing_sink_gets_no_marks_and_the_batch_again_later() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2], &[]).await;
        let sink = FakeSink::new(&server, None);
        sink.fail.store(true, Ordering::SeqCst);
        let running = start(settings(&server), &sink);
        eventually("a retry", || sink.batches().len() >= 2).await;
        let events = server.events();
        assert!(position(&events, "UID STORE").is_none(), "{events:?}");
        assert!(!server.has_flag(1, "\\Seen"));
        assert_eq!(running.status.fetched_total(), 0);

        sink.fail.store(false, Ordering::SeqCst);
        eventually("marked after recovery", || server.has_flag(2, "\\Seen")).await;
        assert!(sink.batches().iter().all(|b| b == &vec![1, 2]));
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_changed_uidvalidity_starts_from_uid_zero() {
    bounded(async {
        let server = FakeServer::start(7, &[3, 4], &[]).await;
        let old = Checkpoint {
            uidvalidity: 5,
            last_uid: 10,
        };
        let sink = FakeSink::new(&server, Some(old));
        let running = start(settings(&server), &sink);
        eventually("a batch", || !sink.batches().is_empty()).await;
        assert_eq!(sink.batches()[0], vec![3, 4]);
        assert_eq!(sink.batches.lock().unwrap()[0].0, 7);
        assert!(server.events().contains(&"UID SEARCH UID 1:*".to_string()));
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_highest_uid_below_the_checkpoint_is_not_fetched_again() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2, 3], &[]).await;
        for uid in 1..=3 {
            server.flag(uid, "\\Seen");
        }
        let checkpoint = Checkpoint {
            uidvalidity: 7,
            last_uid: 3,
        };
        let sink = FakeSink::new(&server, Some(checkpoint));
        let running = start(settings(&server), &sink);
        // Polling (no IDLE offered) every second: wait for a second search.
        let searches = || {
            let events = server.events();
            events.iter().filter(|e| *e == "UID SEARCH UID 4:*").count()
        };
        eventually("two polls", || searches() >= 2).await;
        assert!(position(&server.events(), "UID FETCH").is_none());
        assert!(sink.batches().is_empty());
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn committed_but_unmarked_mail_is_marked_on_reconnect() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2, 3], &[]).await;
        let checkpoint = Checkpoint {
            uidvalidity: 7,
            last_uid: 2,
        };
        let sink = FakeSink::new(&server, Some(checkpoint));
        let running = start(settings(&server), &sink);
        eventually("all seen", || (1..=3).all(|u| server.has_flag(u, "\\Seen"))).await;
        assert_eq!(sink.batches(), vec![vec![3]]);
        assert!(
            server
                .events()
                .contains(&"UID STORE 1:2 +FLAGS.SILENT (\\Seen)".to_string())
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_silent_server_times_out_reconnects_and_still_shuts_down_promptly() {
    bounded(async {
        let server = FakeServer::start(7, &[], &[]).await;
        server.state().hang = true;
        let sink = FakeSink::new(&server, None);
        let mut settings = settings(&server);
        settings.timeout_seconds = 1;
        let running = start(settings, &sink);
        // 1 s greeting timeout + 1 s backoff, then the second connection.
        eventually("a reconnect", || server.state().connections >= 2).await;
        assert!(!running.status.is_connected());
        let took = running.stop().await;
        assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    })
    .await;
}

#[tokio::test]
async fn shutdown_during_idle_returns_within_a_second() {
    bounded(async {
        let server = FakeServer::start(7, &[], &["IDLE"]).await;
        let sink = FakeSink::new(&server, None);
        let running = start(settings(&server), &sink);
        eventually("IDLE", || server.events().contains(&"IDLE".to_string())).await;
        let took = running.stop().await;
        assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
        let events = server.events();
        let idle = position(&events, "IDLE").unwrap_or(usize::MAX);
        let done = position(&events, "DONE").expect("DONE sent");
        let logout = position(&events, "LOGOUT").expect("LOGOUT sent");
        assert!(idle < done && done < logout, "{events:?}");
    })
    .await;
}

#[tokio::test]
async fn idle_wakes_up_for_new_mail() {
    bounded(async {
        let server = FakeServer::start(7, &[1], &["IDLE"]).await;
        let sink = FakeSink::new(&server, None);
        let running = start(settings(&server), &sink);
        eventually("IDLE", || server.events().contains(&"IDLE".to_string())).await;
        assert_eq!(sink.batches(), vec![vec![1]]);
        let uid = server.deliver();
        eventually("the new mail", || sink.batches().len() == 2).await;
        assert_eq!(sink.batches()[1], vec![uid]);
        eventually("marked", || server.has_flag(uid, "\\Seen")).await;
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_idle_the_server_answers_with_no_ends_the_session_instead_of_looping() {
    bounded(async {
        let server = FakeServer::start(7, &[1], &["IDLE"]).await;
        server.state().idle_complaint = Some("Internal error occurred.".into());
        let sink = FakeSink::new(&server, None);
        let running = start(settings(&server), &sink);
        // A new session after the backoff (1 s), not IDLE after IDLE.
        eventually("a new session", || server.state().connections >= 2).await;
        let idles = server.events().iter().filter(|e| *e == "IDLE").count();
        assert!(idles <= 3, "{idles} IDLE commands: the watcher loops");

        // Once the server waits again, so does the watcher, and new mail
        // still arrives.
        server.state().idle_complaint = None;
        let uid = server.deliver();
        eventually("the new mail", || {
            sink.batches().iter().any(|b| b.contains(&uid))
        })
        .await;
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn move_uses_move_when_offered_and_copy_expunge_otherwise() {
    bounded(async {
        for caps in [vec!["MOVE"], vec!["UIDPLUS"], vec![]] {
            let server = FakeServer::start(7, &[1, 2], &caps).await;
            let sink = FakeSink::new(&server, None);
            let mut settings = settings(&server);
            settings.after_ingest = AfterIngest::Move("Done".into());
            let running = start(settings, &sink);
            let moved = || {
                let st = server.state();
                st.messages.is_empty() && st.folders.get("Done").is_some_and(|f| f.len() == 2)
            };
            eventually("moved", moved).await;
            let events = server.events();
            assert!(
                events.contains(&"CREATE \"Done\"".to_string()),
                "{events:?}"
            );
            let expected: &[&str] = match caps.first() {
                Some(&"MOVE") => &["UID MOVE 1:2 \"Done\""],
                Some(_) => &["UID COPY 1:2 \"Done\"", "UID EXPUNGE 1:2"],
                None => &["UID COPY 1:2 \"Done\"", "EXPUNGE"],
            };
            for command in expected {
                assert!(
                    events.contains(&command.to_string()),
                    "{caps:?}: {events:?}"
                );
            }
            running.stop().await;
        }
    })
    .await;
}

#[tokio::test]
async fn delete_flags_and_expunges() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2], &["UIDPLUS"]).await;
        server.flag(2, "\\Seen");
        // Not a first start (that would leave the read mail 2 alone).
        let checkpoint = Checkpoint {
            uidvalidity: 7,
            last_uid: 0,
        };
        let sink = FakeSink::new(&server, Some(checkpoint));
        let mut settings = settings(&server);
        settings.after_ingest = AfterIngest::Delete;
        let running = start(settings, &sink);
        eventually("deleted", || server.state().messages.is_empty()).await;
        let events = server.events();
        let store = position(&events, "UID STORE 1:2 +FLAGS.SILENT (\\Deleted)").expect("store");
        let expunge = position(&events, "UID EXPUNGE 1:2").expect("expunge");
        assert!(position(&events, "INGEST 1,2").expect("ingest") < store && store < expunge);
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connect_errors_are_clear_and_read_mailbox_reads() {
    bounded(async {
        let server = FakeServer::start(7, &[1, 2], &[]).await;
        let mut session = connect(&settings(&server)).await.expect("plain connect");
        let mails = read_mailbox(&mut session, "INBOX").await.expect("read");
        let uids: Vec<u32> = mails.iter().map(|m| m.uid).collect();
        assert_eq!(uids, [1, 2]);
        assert!(server.events().contains(&"EXAMINE \"INBOX\"".to_string()));

        let mut tls = settings(&server);
        tls.tls = TlsMode::Tls;
        let err = connect(&tls).await.expect_err("TLS to a plain server");
        assert!(format!("{err:#}").contains("TLS"), "{err:#}");
        tls.tls = TlsMode::Starttls;
        let err = connect(&tls).await.expect_err("no STARTTLS here");
        assert!(format!("{err:#}").contains("STARTTLS"), "{err:#}");
    })
    .await;
}
