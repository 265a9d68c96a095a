//! Hostile web clients (issue 17, finding 6): half-sent requests,
//! slowloris headers and idle connections are closed on time, and a flood
//! of connections beyond the cap (set by `web.max_connections` or by a low
//! file limit) neither starves `/healthz` nor stops mail: the daemon keeps
//! fetching over IMAP and sending over SMTP meanwhile. The flood runs the
//! real binary under `ulimit -n`, so the test process keeps its own limit.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

const CUSTOMER: &str = "customer5@example.test";

/// Waits (bounded by `limit`) until the server closes `stream`; how long
/// it took, or `None` if it stayed open.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_all)
        .await
        .ok()
        .map(|()| start.elapsed())
}

async fn healthz(web: SocketAddr) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    match client.get(format!("http://{web}/healthz")).send().await {
        Ok(response) => response.status() == 200,
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_and_idle_connections_are_closed_on_time() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let mut settings = settings(&stack, &support, dir.path());
    settings.web.header_timeout_seconds = 1;
    settings.web.idle_timeout_seconds = 4;
    let daemon = Daemon::start(settings).await;
    let slack = Duration::from_secs(2);

    let mut half = TcpStream::connect(daemon.web).await.expect("connects");
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("sent");
    let took = closed_within(&mut half, Duration::from_secs(1) + slack).await;
    assert!(took.is_some(), "a half-sent request was still open");

    // Slowloris: one header byte every 200 ms never completes the headers.
    let mut drip = TcpStream::connect(daemon.web).await.expect("connects");
    let dripping = tokio::spawn(async move {
        let start = Instant::now();
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().cycle() {
            if drip.write_all(&[*byte]).await.is_err() {
                return Some(start.elapsed());
            }
            if start.elapsed() > Duration::from_secs(10) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    });
    let dripped = dripping.await.expect("the dripper ran");
    assert!(
        dripped.is_some_and(|t| t < Duration::from_secs(1) + slack + slack),
        "a slowloris client was kept for {dripped:?}"
    );

    // A connection that never sends a byte owes its first request's
    // headers: the header timeout.
    let mut silent = TcpStream::connect(daemon.web).await.expect("connects");
    let took = closed_within(&mut silent, Duration::from_secs(1) + slack).await;
    assert!(
        took.is_some(),
        "a silent connection was kept past the header timeout"
    );

    // A kept-alive connection answers, then is idle: the idle timeout, not
    // the header one.
    let mut kept = TcpStream::connect(daemon.web).await.expect("connects");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sent");
    let mut answer = [0u8; 12];
    kept.read_exact(&mut answer).await.expect("an answer");
    assert_eq!(&answer, b"HTTP/1.1 200");
    let took = closed_within(&mut kept, Duration::from_secs(4) + slack).await;
    let took = took.expect("an idle kept-alive connection was still open");
    assert!(took >= Duration::from_secs(3), "closed after {took:?}");
    assert!(healthz(daemon.web).await);
    daemon.stop().await;
}

/// `postdesk run` under `ulimit -n FILES`, configured through the
/// environment; its log lines collected.
struct LimitedDaemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl LimitedDaemon {
    fn spawn(env: &[(String, String)], files: u32) -> LimitedDaemon {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" run"))
            .arg(binary())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info,refinery_core=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("postdesk run starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        LimitedDaemon { child, log }
    }

    fn find<T>(&self, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter().find_map(|l| parse(l))
    }

    async fn wait_for<T>(&self, what: &str, parse: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = self.find(&parse) {
                return found;
            }
            assert!(Instant::now() < deadline, "the daemon never logged {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for LimitedDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Floods a daemon whose cap should come out as `cap` with `clients`
/// idle or half-sent connections, and checks that health and mail go on.
async fn flood(max_connections: usize, files: u32, cap: usize, clients: usize) {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let db = dir.path().join("postdesk.db");
    let env: Vec<(String, String)> = [
        ("SUPPORT__ADDRESS", support.clone()),
        ("SUPPORT__NAME", "Example Support".to_string()),
        ("SUPPORT__AGENTS", "agent@example.test".to_string()),
        ("SUPPORT__PUBLIC_URL", "http://127.0.0.1:8025".to_string()),
        ("IMAP__HOST", stack.host.clone()),
        ("IMAP__PORT", stack.imap_port.to_string()),
        ("IMAP__TLS", "none".to_string()),
        ("IMAP__USERNAME", support.clone()),
        ("IMAP__PASSWORD", stack.password.clone()),
        ("IMAP__POLL_SECONDS", "1".to_string()),
        ("SMTP__HOST", stack.host.clone()),
        ("SMTP__PORT", stack.smtp_port.to_string()),
        ("SMTP__TLS", "none".to_string()),
        ("WEB__LISTEN", "127.0.0.1:0".to_string()),
        ("WEB__MAX_CONNECTIONS", max_connections.to_string()),
        ("WEB__HEADER_TIMEOUT_SECONDS", "2".to_string()),
        ("WEB__IDLE_TIMEOUT_SECONDS", "3".to_string()),
    ]
    .into_iter()
    .chain(crate::support::test_database(&db).env())
    .map(|(k, v)| (format!("POSTDESK__{k}"), v))
    .collect();
    let daemon = LimitedDaemon::spawn(&env, files);
    let web: SocketAddr = daemon
        .wait_for("its web address", |l| {
            l.split("status page on http://")
                .nth(1)?
                .trim()
                .parse()
                .ok()
        })
        .await;
    let logged_cap: usize = daemon
        .wait_for("its connection cap", |l| {
            l.split("takes at most ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .await;
    assert_eq!(logged_cap, cap);

    let mut held = Vec::new();
    for n in 0..clients {
        let mut stream = TcpStream::connect(web).await.expect("the kernel takes it");
        if n % 2 == 1 {
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost:").await;
        }
        held.push(stream);
    }
    // Health answers while the flood is held open.
    let mut answered = false;
    for _ in 0..20 {
        if healthz(web).await {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        answered,
        "/healthz did not answer under {clients} connections"
    );

    // Mail goes on: the watcher fetches, the sender connects to SMTP.
    let marker = unique("flood");
    send(&stack, CUSTOMER, &support, &format!("Help {marker}"), "Hi.").await;
    let confirmation = wait_for_mail(&stack, CUSTOMER, &marker).await;
    assert!(confirmation.subject.contains("[Ticket #"));

    // Every flooding connection is closed in the end.
    let mut still_open = 0;
    for stream in &mut held {
        if closed_within(stream, Duration::from_secs(10))
            .await
            .is_none()
        {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "of {clients} flooding connections");
    assert!(healthz(web).await);
    let emfile = daemon.find(|l| l.contains("Too many open files").then_some(()));
    assert!(emfile.is_none(), "the daemon ran out of descriptors");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_max_connections_starves_neither_health_nor_mail() {
    flood(20, 1024, 20, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_file_limit_starves_neither_health_nor_mail() {
    // 128 descriptors: 64 kept in reserve and 8 for the admin listener.
    flood(512, 128, 128 - 64 - 8, 400).await;
}
