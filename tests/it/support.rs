//! Test harness: the private mail stack started by `scripts/mailstack`
//! (found through its `MAILSTACK_*` environment), a daemon spawned in
//! process on port 0 with a fresh database, and plain IMAP/SMTP clients
//! that play the customers and agents. The database behind each test
//! (SQLite, or PostgreSQL under `POSTDESK_TEST_POSTGRES`) is `db.rs`'s.

mod db;

pub use db::{TestDir, connect_store, open_store, sqlite_only, temp_dir, test_database};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use lettre::address::Envelope;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use postdesk::app::App;
use postdesk::ingest::parse::{ParsedMail, parse};
use postdesk::settings::Settings;
use postdesk::store::Store;

/// The running mail stack's ports and credentials.
#[derive(Debug, Clone)]
pub struct Stack {
    pub host: String,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub smtp_port: u16,
    pub submission_port: u16,
    /// Submission with TLS from the first byte (port 465's kind).
    pub submissions_port: u16,
    pub ca_file: String,
    pub password: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through scripts/test, or start a stack with \
             `scripts/mailstack start DIR` and `eval \"$(scripts/mailstack env DIR)\"`"
        )
    })
}

impl Stack {
    pub fn from_env() -> Stack {
        Stack::from_vars(var)
    }

    /// The stack described by the `MAILSTACK_*` variables `var` looks up.
    pub fn from_vars(var: impl Fn(&str) -> String) -> Stack {
        let port = |name: &str| var(name).parse::<u16>().expect("a port number");
        Stack {
            host: var("MAILSTACK_HOST"),
            imap_port: port("MAILSTACK_IMAP_PORT"),
            imaps_port: port("MAILSTACK_IMAPS_PORT"),
            smtp_port: port("MAILSTACK_SMTP_PORT"),
            submission_port: port("MAILSTACK_SUBMISSION_PORT"),
            submissions_port: port("MAILSTACK_SUBMISSIONS_PORT"),
            ca_file: var("MAILSTACK_CA"),
            password: var("MAILSTACK_PASSWORD"),
        }
    }
}

static NEXT_SUPPORT_BOX: AtomicUsize = AtomicUsize::new(1);

/// A support mailbox of its own for each test (t01 … t150), emptied first.
pub async fn fresh_support_box(stack: &Stack) -> String {
    let n = NEXT_SUPPORT_BOX.fetch_add(1, Ordering::SeqCst);
    assert!(n <= 150, "the mail stack has 150 spare support mailboxes");
    let address = format!("t{n:02}@example.test");
    clear_mailbox(stack, &address).await;
    address
}

/// Settings for a daemon on `support`'s mailbox, plain IMAP and SMTP on
/// loopback, a fresh database in `dir`, the web page on port 0.
pub fn settings(stack: &Stack, support: &str, dir: &std::path::Path) -> Settings {
    let db = test_database(&dir.join("postdesk.db"));
    let env = [
        ("SUPPORT__ADDRESS", support.to_string()),
        ("SUPPORT__NAME", "Example Support".to_string()),
        ("SUPPORT__AGENTS", "agent@example.test".to_string()),
        ("SUPPORT__PUBLIC_URL", "http://127.0.0.1:8025".to_string()),
        ("IMAP__HOST", stack.host.clone()),
        ("IMAP__PORT", stack.imap_port.to_string()),
        ("IMAP__TLS", "none".to_string()),
        ("IMAP__USERNAME", support.to_string()),
        ("IMAP__PASSWORD", stack.password.clone()),
        ("IMAP__POLL_SECONDS", "1".to_string()),
        ("IMAP__TIMEOUT_SECONDS", "10".to_string()),
        ("SMTP__HOST", stack.host.clone()),
        ("SMTP__PORT", stack.smtp_port.to_string()),
        ("SMTP__TLS", "none".to_string()),
        ("WEB__LISTEN", "127.0.0.1:0".to_string()),
    ];
    let env = env
        .into_iter()
        .chain(db.env())
        .map(|(k, v)| (format!("POSTDESK__{k}"), v))
        .collect();
    Settings::load_with_env(None, env).expect("test settings are valid")
}

/// A daemon running in this process.
pub struct Daemon {
    pub web: SocketAddr,
    pub store: Arc<Store>,
    #[allow(dead_code)]
    pub settings: Settings,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    pub async fn start(settings: Settings) -> Daemon {
        let app = App::build(settings.clone())
            .await
            .expect("the daemon builds");
        let web = app.web_addr().expect("a web address");
        let store = app.store();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Daemon {
            web,
            store,
            settings,
            shutdown,
            task,
        }
    }

    /// Stops the daemon as SIGTERM would, and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the daemon stops within 10 s")
            .expect("the daemon task did not panic")
            .expect("the daemon ran without error");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.web)
    }
}

/// A raw mail as a customer's client would write it.
pub fn raw_mail(
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> (String, Vec<u8>) {
    let id = format!("{}@customer.test", unique("m"));
    let mut headers = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    for (name, value) in extra {
        headers.push_str(&format!("{name}: {value}\r\n"));
    }
    (id, format!("{headers}\r\n{body}\r\n").into_bytes())
}

/// A customer's mail written `age` ago (Date: header), as its Message-ID
/// and bytes.
pub fn written(from: &str, to: &str, subject: &str, age: chrono::Duration) -> (String, Vec<u8>) {
    let date = (chrono::Utc::now() - age).to_rfc2822();
    let (id, raw) = raw_mail(from, to, subject, "Please help.", &[]);
    // `raw_mail` dates it now: put the wanted Date in its place.
    let text = String::from_utf8(raw).expect("ASCII mail");
    let start = text.find("Date: ").expect("a Date header");
    let end = start + text[start..].find("\r\n").expect("a line end");
    let text = format!("{}Date: {date}{}", &text[..start], &text[end..]);
    (id, text.into_bytes())
}

pub async fn append(stack: &Stack, support: &str, mails: &[(&Vec<u8>, bool)]) {
    let mut session = imap_login(stack, support).await;
    for (raw, seen) in mails {
        let flags = seen.then_some("(\\Seen)");
        session
            .append("INBOX", flags, None, raw)
            .await
            .expect("the server takes the APPEND");
    }
    let _ = session.logout().await;
}

/// `bytes` in base64, 76 characters a line with CRLF, as mail carries it.
pub fn base64_lines(bytes: &[u8]) -> String {
    use base64::Engine;
    let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
    let lines: Vec<&str> = flat
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    lines.join("\r\n")
}

/// A free port for a server a test starts only later (Postfix must be
/// routed to it first): from 10000–19999, below the kernel's ephemeral
/// range (32768 and up), where a concurrent test's outgoing connection
/// cannot take it meanwhile (one did, once, in CI), and below the mail
/// stacks' ports (20000 and up).
pub fn free_listen_port() -> u16 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id();
    (0..10_000u32)
        .map(|i| 10_000 + ((seed.wrapping_add(i.wrapping_mul(7_919))) % 10_000) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port in 10000-19999")
}

/// A string unique in this test run.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}{}-{nanos}-{n}", std::process::id())
}

/// Sends raw bytes over plain SMTP to the stack (as another server would).
pub async fn send_raw(stack: &Stack, from: &str, to: &str, raw: &[u8]) {
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(stack.host.clone())
        .port(stack.smtp_port)
        .build();
    let envelope = Envelope::new(
        Some(from.parse().expect("from")),
        vec![to.parse().expect("to")],
    )
    .expect("an envelope");
    mailer
        .send_raw(&envelope, raw)
        .await
        .expect("the stack accepts the mail");
}

/// Sends a simple mail and returns its Message-ID.
pub async fn send(stack: &Stack, from: &str, to: &str, subject: &str, body: &str) -> String {
    let (id, raw) = raw_mail(from, to, subject, body, &[]);
    send_raw(stack, from, to, &raw).await;
    id
}

type ImapSession = async_imap::Session<TcpStream>;

pub async fn imap_login(stack: &Stack, user: &str) -> ImapSession {
    let tcp = TcpStream::connect((stack.host.as_str(), stack.imap_port))
        .await
        .expect("IMAP connect");
    let mut client = async_imap::Client::new(tcp);
    client
        .read_response()
        .await
        .expect("a greeting")
        .expect("a greeting");
    client
        .login(user, &stack.password)
        .await
        .map_err(|(e, _)| e)
        .expect("IMAP login")
}

/// Every mail in `user`'s INBOX, raw, with its flags' \Seen state.
pub async fn inbox(stack: &Stack, user: &str) -> Vec<(Vec<u8>, bool)> {
    let mut session = imap_login(stack, user).await;
    session.select("INBOX").await.expect("select INBOX");
    let fetches: Vec<_> = session
        .fetch("1:*", "(FLAGS BODY.PEEK[])")
        .await
        .expect("fetch")
        .try_collect()
        .await
        .unwrap_or_default();
    let mails = fetches
        .iter()
        .filter_map(|f| {
            let seen = f
                .flags()
                .any(|flag| matches!(flag, async_imap::types::Flag::Seen));
            f.body().map(|b| (b.to_vec(), seen))
        })
        .collect();
    let _ = session.logout().await;
    mails
}

/// The mails in `user`'s INBOX whose subject contains `needle`.
pub async fn mails_with_subject(stack: &Stack, user: &str, needle: &str) -> Vec<ParsedMail> {
    inbox(stack, user)
        .await
        .into_iter()
        .filter_map(|(raw, _)| parse(&raw).ok())
        .filter(|m| m.subject.contains(needle))
        .collect()
}

/// Waits (bounded) for a mail whose subject contains `needle`.
pub async fn wait_for_mail(stack: &Stack, user: &str, needle: &str) -> ParsedMail {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(mail) = mails_with_subject(stack, user, needle)
            .await
            .into_iter()
            .next()
        {
            return mail;
        }
        assert!(
            Instant::now() < deadline,
            "no mail with subject containing {needle:?} reached {user} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes everything in `user`'s INBOX.
pub async fn clear_mailbox(stack: &Stack, user: &str) {
    let mut session = imap_login(stack, user).await;
    let mailbox = session.select("INBOX").await.expect("select INBOX");
    if mailbox.exists > 0 {
        session
            .store("1:*", "+FLAGS.SILENT (\\Deleted)")
            .await
            .expect("store")
            .try_collect::<Vec<_>>()
            .await
            .expect("store responses");
        session
            .expunge()
            .await
            .expect("expunge")
            .try_collect::<Vec<_>>()
            .await
            .expect("expunge responses");
    }
    let _ = session.logout().await;
}

/// The path of the built `postdesk` binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_postdesk"))
}

/// Runs the `postdesk` command line on the database standing for `db`, with `env`
/// added, `stdin` piped in, and waits for it.
pub fn run_cli(
    db: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&[u8]>,
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary())
        .args(args)
        .envs(test_database(db).process_env())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("postdesk starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("stdin is written");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("postdesk finishes")
}

/// A daemon with the test settings on a fresh support mailbox of the
/// shared stack. Keep the `TempDir` (its database) until the end.
pub async fn daemon_on_fresh_box() -> (Stack, String, TestDir, Daemon) {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let daemon = Daemon::start(settings(&stack, &support, dir.path())).await;
    (stack, support, dir, daemon)
}
