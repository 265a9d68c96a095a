//! Sessions over in-memory streams against a real store: the DATA budget
//! under many senders at once, the whole-message deadline, and the 451 to
//! a DATA that found no slot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::{DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::Notify;

use super::*;
use crate::ingest::Pipeline;
use crate::settings::Settings;
use crate::store::Store;

/// The message cap of these tests (`limits.max_message_bytes`).
const MAX: u64 = 64 * 1024;

fn desk() -> (tempfile::TempDir, Arc<Context>) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let env = [
        ("SUPPORT__ADDRESS", "help@desk.test"),
        ("LIMITS__MAX_MESSAGE_BYTES", &MAX.to_string()),
        ("LIMITS__AUTO_REPLIES_PER_HOUR", "100000"),
    ]
    .iter()
    .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string()))
    .collect();
    let settings = Settings::load_with_env(None, env).expect("settings");
    let store = Store::open(&dir.path().join("t.db")).expect("a store");
    let ctx = Context {
        pipeline: Arc::new(Pipeline::new(&settings, "unit-secret-unit-secret")),
        store: Arc::new(store),
        settings: Arc::new(settings),
        outbox_wake: Arc::new(Notify::new()),
        host: "desk.test".to_string(),
    };
    (dir, Arc::new(ctx))
}

struct Client {
    reader: BufReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
}

impl Client {
    /// A connection served by `serve`, greeted.
    async fn connect(ctx: &Arc<Context>, budget: &Arc<DataBudget>) -> Client {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let (ctx, budget) = (Arc::clone(ctx), Arc::clone(budget));
        tokio::spawn(serve(theirs, ctx, budget, CancellationToken::new()));
        let (read, writer) = tokio::io::split(ours);
        let mut client = Client {
            reader: BufReader::new(read),
            writer,
        };
        assert!(client.reply().await.starts_with("220 "));
        client
    }

    /// The last line of the next reply; "" when the server closed.
    async fn reply(&mut self) -> String {
        self.reply_within(Duration::from_secs(20))
            .await
            .expect("a reply in time")
    }

    async fn reply_within(&mut self, wait: Duration) -> Option<String> {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.reader.read_line(&mut line);
            tokio::time::timeout(wait, read).await.ok()?.ok()?;
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Some(line.trim_end().to_string());
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.write(format!("{line}\r\n").as_bytes())
            .await
            .expect("written");
        self.reply().await
    }

    /// LHLO, MAIL, RCPT, then DATA sent (its reply not read).
    async fn start_data(&mut self) {
        assert!(self.cmd("LHLO mta.test").await.starts_with("250 "));
        assert!(
            self.cmd("MAIL FROM:<c@customer.test>")
                .await
                .starts_with("250")
        );
        assert!(
            self.cmd("RCPT TO:<help@desk.test>")
                .await
                .starts_with("250")
        );
        self.write(b"DATA\r\n").await.expect("written");
    }
}

/// A customer mail of nearly `MAX` bytes, without the final dot.
fn big_mail(n: usize) -> Vec<u8> {
    let mut mail = format!(
        "From: c{n}@customer.test\r\nTo: help@desk.test\r\nSubject: big {n}\r\n\
         Message-ID: <big{n}@customer.test>\r\n\r\n"
    )
    .into_bytes();
    let line = [b'x'; 998];
    while (mail.len() + 2000) as u64 <= MAX {
        mail.extend_from_slice(&line);
        mail.extend_from_slice(b"\r\n");
    }
    mail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_senders_at_once_never_hold_more_than_the_data_slots() {
    let (_dir, ctx) = desk();
    let budget = DataBudget::new(4, Duration::from_secs(30), Duration::from_secs(60));
    let (reading, most_reading) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut senders = Vec::new();
    for n in 0..12 {
        let (ctx, budget) = (Arc::clone(&ctx), Arc::clone(&budget));
        let (reading, most_reading) = (Arc::clone(&reading), Arc::clone(&most_reading));
        senders.push(tokio::spawn(async move {
            let mut client = Client::connect(&ctx, &budget).await;
            client.start_data().await;
            assert!(client.reply().await.starts_with("354 "));
            let now = reading.fetch_add(1, Ordering::SeqCst) + 1;
            most_reading.fetch_max(now, Ordering::SeqCst);
            client.write(&big_mail(n)).await.expect("the message");
            // Hold the slot a while, the whole message read, as a slow MTA would.
            tokio::time::sleep(Duration::from_millis(150)).await;
            reading.fetch_sub(1, Ordering::SeqCst);
            client.write(b".\r\n").await.expect("the dot");
            client.reply().await
        }));
    }
    for sender in senders {
        let reply = sender.await.expect("a sender");
        assert!(reply.starts_with("250 "), "{reply}");
    }
    let most = most_reading.load(Ordering::SeqCst);
    assert!((2..=4).contains(&most), "{most} messages read at once");
    let peak = budget.peak_bytes();
    assert!(peak <= 4 * MAX, "held {peak} bytes, budget {}", 4 * MAX);
    assert!(peak > MAX, "the slots were used together: {peak}");
    assert_eq!(budget.held_bytes(), 0, "every slot gave its bytes back");
    let tickets = ctx.store.list_tickets(None).expect("the tickets");
    assert_eq!(tickets.len(), 12, "every message was stored");
}

#[tokio::test]
async fn a_slow_drip_past_the_deadline_gets_451_4_4_2_and_nothing_is_stored() {
    let (_dir, ctx) = desk();
    let deadline = Duration::from_millis(400);
    let budget = DataBudget::new(4, Duration::from_secs(5), deadline);
    let mut client = Client::connect(&ctx, &budget).await;
    client.start_data().await;
    assert!(client.reply().await.starts_with("354 "));
    let started = Instant::now();
    let Client {
        mut reader,
        mut writer,
    } = client;
    // One line every 50 ms: well inside the per-line timeout, for ever.
    let drip = tokio::spawn(async move {
        let mut lines = 0;
        while writer.write_all(b"X-Drip: y\r\n").await.is_ok() && lines < 200 {
            lines += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        lines
    });
    let mut reply = String::new();
    let read = reader.read_line(&mut reply);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("a reply before the drip ends")
        .expect("read");
    assert!(reply.starts_with("451 4.4.2 "), "{reply}");
    assert!(started.elapsed() >= deadline);
    let mut rest = String::new();
    let closed = reader.read_line(&mut rest).await.expect("read");
    assert_eq!(closed, 0, "the connection is closed: {rest}");
    assert!(
        drip.await.expect("the drip") < 200,
        "the sender was cut off"
    );
    assert_eq!(budget.held_bytes(), 0);
    let tickets = ctx.store.list_tickets(None).expect("the tickets");
    assert!(tickets.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn a_data_that_finds_no_slot_gets_451_and_may_try_again() {
    let (_dir, ctx) = desk();
    let budget = DataBudget::new(1, Duration::from_millis(200), Duration::from_secs(60));
    let mut first = Client::connect(&ctx, &budget).await;
    first.start_data().await;
    assert!(first.reply().await.starts_with("354 "));
    let mut second = Client::connect(&ctx, &budget).await;
    second.start_data().await;
    let busy = second.reply().await;
    assert!(busy.starts_with("451 4.3.2 "), "{busy}");
    // The transaction ended: a new one starts, and waits its turn.
    assert!(
        second
            .cmd("MAIL FROM:<c@customer.test>")
            .await
            .starts_with("250")
    );
    assert!(
        second
            .cmd("RCPT TO:<help@desk.test>")
            .await
            .starts_with("250")
    );
    first.write(&big_mail(1)).await.expect("the message");
    first.write(b".\r\n").await.expect("the dot");
    assert!(first.reply().await.starts_with("250 "));
    assert!(second.cmd("DATA").await.starts_with("354 "));
}
