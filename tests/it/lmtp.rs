//! LMTP intake (issue 12 §3): the real Postfix of the mail stack relays a
//! test-only domain to the daemon's LMTP port (`scripts/mailstack route`,
//! one domain per test), and the customer's confirmation comes back
//! through Postfix and Dovecot; a plain LMTP client checks the reply codes
//! (550, 552, a duplicate's 250, pipelining); the pipe's cap. Every wait is
//! bounded.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use std::net::SocketAddr;

use postdesk::app::App;
use postdesk::settings::Settings;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::sync::CancellationToken;

use crate::support::{
    Stack, fresh_support_box, mails_with_subject, raw_mail, run_cli, send_raw, temp_dir,
    test_database, unique, wait_for_mail,
};

/// `scripts/mailstack route DIR DOMAIN [NEXTHOP]` (blocking; panics on failure).
pub fn route(stack_dir: &Path, domain: &str, nexthop: Option<&str>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/mailstack");
    let mut args = vec!["route".to_string(), stack_dir.display().to_string()];
    args.push(domain.to_string());
    args.extend(nexthop.map(str::to_string));
    let out = Command::new(script)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("scripts/mailstack runs");
    assert!(
        out.status.success(),
        "mailstack {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A route that is taken away again when the test ends (also on panic).
pub struct Route {
    stack_dir: std::path::PathBuf,
    pub domain: String,
}

impl Route {
    /// Routes a fresh test-only domain to `127.0.0.1:port` over LMTP.
    pub fn to_port(stack_dir: &Path, port: u16) -> Route {
        let domain = format!("{}.lmtp.test", unique("d").replace('_', "-"));
        route(
            stack_dir,
            &domain,
            Some(&format!("lmtp:inet:127.0.0.1:{port}")),
        );
        Route {
            stack_dir: stack_dir.to_path_buf(),
            domain,
        }
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        route(&self.stack_dir, &self.domain, None);
    }
}

/// Daemon settings: IMAP off, LMTP on port 0, the support address `support`.
pub fn lmtp_settings(stack: &Stack, support: &str, dir: &Path, extra: &[(&str, &str)]) -> Settings {
    let mut env: Vec<(String, String)> = [
        ("SUPPORT__ADDRESS", support),
        ("SUPPORT__NAME", "Example Support"),
        ("SUPPORT__AGENTS", "agent@example.test"),
        ("IMAP__ENABLED", "false"),
        ("LMTP__LISTEN", "127.0.0.1:0"),
        ("SMTP__HOST", &stack.host),
        ("SMTP__PORT", &stack.smtp_port.to_string()),
        ("SMTP__TLS", "none"),
        ("WEB__LISTEN", "127.0.0.1:0"),
    ]
    .iter()
    .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string()))
    .collect();
    env.extend(test_database(&dir.join("postdesk.db")).process_env());
    env.extend(
        extra
            .iter()
            .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string())),
    );
    Settings::load_with_env(None, env).expect("LMTP test settings are valid")
}

/// A plain LMTP client: one reply (its last line) per command.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("LMTP connect");
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::new(read),
            writer,
        };
        assert!(client.reply().await.starts_with("220 "), "a greeting");
        client
    }

    /// The next reply's last line (continuation lines skipped).
    pub async fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
                    .await
                    .expect("a reply within 30 s")
                    .expect("the reply is read");
            assert!(read > 0, "the server closed the connection");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_string();
            }
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    pub async fn cmd(&mut self, line: &str) -> String {
        self.write(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// DATA, the dot-stuffed mail and the final dot; the 354 is checked.
    pub async fn data(&mut self, raw: &[u8]) {
        assert!(self.cmd("DATA").await.starts_with("354 "));
        let text = String::from_utf8_lossy(raw).replace("\r\n.", "\r\n..");
        let stuffed = if text.starts_with('.') {
            format!(".{text}")
        } else {
            text
        };
        self.write(stuffed.as_bytes()).await;
        if !stuffed.ends_with("\r\n") {
            self.write(b"\r\n").await;
        }
        self.write(b".\r\n").await;
    }
}

fn count(path: &Path, sql: &str) -> i64 {
    test_database(path).scalar_i64(sql, &[])
}

#[tokio::test]
async fn postfix_delivers_over_lmtp_and_the_customer_gets_a_confirmation() {
    let stack = Stack::from_env();
    let stack_dir =
        std::path::PathBuf::from(std::env::var("MAILSTACK_DIR").expect("MAILSTACK_DIR"));
    let customer = fresh_support_box(&stack).await;
    let dir = temp_dir();
    // The route needs the port, the settings the domain: a free port
    // first, the daemon binds it once Postfix is routed to it.
    let port = crate::support::free_listen_port();
    let route = tokio::task::spawn_blocking({
        let stack_dir = stack_dir.clone();
        move || Route::to_port(&stack_dir, port)
    })
    .await
    .expect("routed");
    let support = format!("help@{}", route.domain);
    let listen = format!("127.0.0.1:{port}");
    let settings = lmtp_settings(&stack, &support, dir.path(), &[("LMTP__LISTEN", &listen)]);
    let daemon = LmtpDaemon::start(settings).await;
    assert_eq!(daemon.lmtp.port(), port);

    let subject = format!("Over LMTP {}", unique("s"));
    let (_, raw) = raw_mail(&customer, &support, &subject, "The printer jams.", &[]);
    send_raw(&stack, &customer, &support, &raw).await;
    let confirmation = wait_for_mail(&stack, &customer, &format!("] {subject}")).await;
    assert!(
        confirmation.subject.starts_with("[Ticket #"),
        "{}",
        confirmation.subject
    );
    let db = dir.path().join("postdesk.db");
    let source = test_database(&db).scalar_text("SELECT source FROM raw_mails", &[]);
    assert_eq!(source, format!("lmtp:{support}"), "stored once, from LMTP");

    // An address of no queue: Postfix gets 550 and bounces to the sender.
    let nobody = format!("nobody@{}", route.domain);
    let (_, raw) = raw_mail(&customer, &nobody, "To nobody", "Hello?", &[]);
    send_raw(&stack, &customer, &nobody, &raw).await;
    let bounce = wait_for_mail(&stack, &customer, "Undelivered Mail").await;
    let text = bounce.text.to_lowercase();
    assert!(
        text.contains("550") || text.contains("5.1.1"),
        "{}",
        bounce.text
    );
    assert_eq!(count(&db, "SELECT count(*) FROM raw_mails"), 1);
    daemon.stop().await;
    drop(route);
}

#[tokio::test]
async fn lmtp_answers_each_recipient_refuses_unknown_and_oversize_and_stores_once() {
    let stack = Stack::from_env();
    let customer = fresh_support_box(&stack).await;
    let dir = temp_dir();
    let support = "help@desk.lmtp.test";
    let extra = [("LIMITS__MAX_MESSAGE_BYTES", "4096")];
    let settings = lmtp_settings(&stack, support, dir.path(), &extra);
    let daemon = LmtpDaemon::start(settings).await;
    let db = dir.path().join("postdesk.db");
    let mut lmtp = Client::connect(daemon.lmtp).await;
    assert!(lmtp.cmd("LHLO mta.test").await.starts_with("250 SIZE 4096"));
    // A declared size over the limit: 552 at MAIL.
    let too_big = format!("MAIL FROM:<{customer}> SIZE=5000");
    assert!(lmtp.cmd(&too_big).await.starts_with("552 5.3.4 "));

    // Pipelined: MAIL, three RCPTs (one of no queue) in one write.
    let from = format!("MAIL FROM:<{customer}> BODY=8BITMIME\r\n");
    let rcpts = "RCPT TO:<help@desk.lmtp.test>\r\nRCPT TO:<sales@desk.lmtp.test>\r\n\
                 RCPT TO:<help+billing@desk.lmtp.test>\r\n";
    lmtp.write(format!("{from}{rcpts}").as_bytes()).await;
    let replies = [
        lmtp.reply().await,
        lmtp.reply().await,
        lmtp.reply().await,
        lmtp.reply().await,
    ];
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "250", "550", "250"], "{replies:?}");
    assert!(replies[2].starts_with("550 5.1.1 "));
    let subject = format!("Dots {}", unique("s"));
    let body = "Line one.\r\n.A line that starts with a dot.\r\n..two dots";
    let (_, raw) = raw_mail(&customer, support, &subject, body, &[]);
    lmtp.data(&raw).await;
    let first = [lmtp.reply().await, lmtp.reply().await];
    assert!(
        first
            .iter()
            .all(|r| r.starts_with("250 2.0.0 Ok: new ticket #")),
        "{first:?}"
    );

    // The same mail again: 250 for each recipient, nothing new stored.
    lmtp.cmd(&format!("MAIL FROM:<{customer}>")).await;
    lmtp.cmd("RCPT TO:<help@desk.lmtp.test>").await;
    lmtp.data(&raw).await;
    assert_eq!(lmtp.reply().await, "250 2.0.0 Ok: already stored");

    // Over the cap while reading: 552, nothing kept, the session goes on.
    lmtp.cmd(&format!("MAIL FROM:<{customer}>")).await;
    lmtp.cmd("RCPT TO:<help@desk.lmtp.test>").await;
    let (_, huge) = raw_mail(&customer, support, "Huge", &"x".repeat(10_000), &[]);
    lmtp.data(&huge).await;
    assert!(lmtp.reply().await.starts_with("552 5.3.4 "));
    assert!(lmtp.cmd("NOOP").await.starts_with("250 "));
    // An overlong command line is refused whole; the next one is read in step.
    let overlong = format!("NOOP {}", "A".repeat(10_000));
    assert!(lmtp.cmd(&overlong).await.starts_with("500 5.5.2 "));
    assert!(lmtp.cmd("NOOP").await.starts_with("250 "));
    assert!(lmtp.cmd("QUIT").await.starts_with("221 "));

    assert_eq!(count(&db, "SELECT count(*) FROM raw_mails"), 1);
    assert_eq!(count(&db, "SELECT count(*) FROM tickets"), 1);
    let text =
        test_database(&db).scalar_text("SELECT text FROM messages WHERE direction = 'in'", &[]);
    // Dot-stuffing undone: the lines read as the customer wrote them.
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    assert!(
        lines.contains(&".A line that starts with a dot."),
        "{text:?}"
    );
    assert!(lines.contains(&"..two dots"), "{text:?}");
    // IMAP is off: the health check does not count it as down.
    let health = reqwest::get(format!("http://{}/healthz", daemon.web))
        .await
        .expect("/healthz");
    assert_eq!(health.status(), 200);
    let confirmation = wait_for_mail(&stack, &customer, &subject).await;
    assert!(confirmation.subject.starts_with("[Ticket #"));
    // The duplicate made no second confirmation.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let copies = mails_with_subject(&stack, &customer, &subject).await;
    assert_eq!(
        copies.len(),
        1,
        "one confirmation for the mail delivered twice"
    );
    daemon.stop().await;
}

/// A daemon in this process with its LMTP server (`App::lmtp_addr`).
pub struct LmtpDaemon {
    pub lmtp: SocketAddr,
    pub web: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl LmtpDaemon {
    pub async fn start(settings: Settings) -> LmtpDaemon {
        let app = App::build(settings).await.expect("the daemon builds");
        let lmtp = app.lmtp_addr().expect("LMTP listens on TCP");
        let web = app.web_addr().expect("a web address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        LmtpDaemon {
            lmtp,
            web,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the daemon stops within 10 s")
            .expect("the daemon task did not panic")
            .expect("the daemon ran without error");
    }
}

#[tokio::test]
async fn the_pipe_keeps_an_oversize_mail_header_only_and_exits_0() {
    let dir = temp_dir();
    let db = dir.path().join("postdesk.db");
    let env = [("POSTDESK__LIMITS__MAX_MESSAGE_BYTES", "2048")];
    let (_, mut raw) = raw_mail(
        "alice@customer.test",
        "tickets@example.com",
        "Huge",
        "",
        &[],
    );
    raw.extend(std::iter::repeat_n(b'y', 300_000));
    let out = run_cli(&db, &env, &["ingest", "-"], Some(&raw));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("quarantined: "), "{stdout}");
    let row = test_database(&db).rows("SELECT size, length(bytes) FROM raw_mails", &[]);
    assert_eq!(row.len(), 1, "one raw mail");
    let (size, kept) = (row[0][0].int(), row[0][1].int());
    assert_eq!(size, raw.len() as i64, "the full size is known");
    assert!(kept < 2048, "only the header is kept: {kept} bytes");
    let empty = run_cli(&db, &env, &["ingest", "-"], Some(b"\r\n"));
    assert_eq!(empty.status.code(), Some(65));
}
