//! Benchmark: the time from an agent submitting a reply (SMTP submission,
//! STARTTLS + AUTH) to the relayed reply in the customer's INBOX, over 20
//! tickets, against the private mail stack of `scripts/mailstack` (its
//! `MAILSTACK_*` environment). The daemon runs in this process with a fresh
//! database. The reading side polls with NOOP + UID SEARCH every 10 ms, so
//! Dovecot's 0.5 s IDLE delay counts once (on the daemon's side), as it
//! would for a real customer whose client is open.
//!
//!   eval "$(scripts/mailstack env DIR)"
//!   cargo run --release --example bench_relay

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use postdesk::app::App;
use postdesk::ingest::parse::{ParsedMail, parse};
use postdesk::settings::Settings;

const SUPPORT: &str = "t59@example.test";
const AGENT: &str = "agent2@example.test";
const CUSTOMER: &str = "customer5@example.test";
const ROUNDS: usize = 20;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: eval \"$(scripts/mailstack env DIR)\" first")
    })
}

struct Stack {
    host: String,
    imap: u16,
    smtp: u16,
    submission: u16,
    ca: String,
    password: String,
}

type Session = async_imap::Session<TcpStream>;

async fn login(stack: &Stack, user: &str) -> Session {
    let tcp = TcpStream::connect((stack.host.as_str(), stack.imap))
        .await
        .expect("IMAP connect");
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.expect("greeting");
    let mut session = client
        .login(user, &stack.password)
        .await
        .map_err(|(e, _)| e)
        .expect("login");
    session.select("INBOX").await.expect("select");
    session
}

/// Polls (NOOP + UID SEARCH every 10 ms) until a mail whose subject has
/// `needle` is in the INBOX; returns it.
async fn wait_for(session: &mut Session, needle: &str) -> ParsedMail {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        session.noop().await.expect("noop");
        let uids = session
            .uid_search(format!("SUBJECT \"{needle}\""))
            .await
            .expect("search");
        if let Some(uid) = uids.into_iter().max() {
            let fetched: Vec<_> = session
                .uid_fetch(uid.to_string(), "BODY.PEEK[]")
                .await
                .expect("fetch")
                .try_collect()
                .await
                .expect("fetch responses");
            if let Some(body) = fetched.first().and_then(|f| f.body()) {
                return parse(body).expect("a parsable mail");
            }
        }
        assert!(
            Instant::now() < deadline,
            "{needle} did not arrive within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn clear(stack: &Stack, user: &str) {
    let mut s = login(stack, user).await;
    let _ = s
        .store("1:*", "+FLAGS.SILENT (\\Deleted)")
        .await
        .map(|st| st.try_collect::<Vec<_>>());
    let _ = s.expunge().await.map(|st| st.try_collect::<Vec<_>>());
    let _ = s.logout().await;
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = |n: &str| env(n).parse::<u16>().expect("a port");
    let stack = Stack {
        host: env("MAILSTACK_HOST"),
        imap: port("MAILSTACK_IMAP_PORT"),
        smtp: port("MAILSTACK_SMTP_PORT"),
        submission: port("MAILSTACK_SUBMISSION_PORT"),
        ca: env("MAILSTACK_CA"),
        password: env("MAILSTACK_PASSWORD"),
    };
    for user in [SUPPORT, AGENT, CUSTOMER] {
        clear(&stack, user).await;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let vars = [
        ("SUPPORT__ADDRESS", SUPPORT.to_string()),
        ("SUPPORT__NAME", "Bench Support".to_string()),
        ("SUPPORT__AGENTS", AGENT.to_string()),
        ("IMAP__HOST", stack.host.clone()),
        ("IMAP__PORT", stack.imap.to_string()),
        ("IMAP__TLS", "none".to_string()),
        ("IMAP__USERNAME", SUPPORT.to_string()),
        ("IMAP__PASSWORD", stack.password.clone()),
        ("SMTP__HOST", stack.host.clone()),
        ("SMTP__PORT", stack.smtp.to_string()),
        ("SMTP__TLS", "none".to_string()),
        (
            "DATABASE__PATH",
            dir.path().join("bench.db").display().to_string(),
        ),
        ("WEB__LISTEN", "127.0.0.1:0".to_string()),
    ];
    let vars = vars
        .into_iter()
        .map(|(k, v)| (format!("POSTDESK__{k}"), v))
        .collect();
    let settings = Settings::load_with_env(None, vars).expect("settings");
    let app = App::build(settings).await.expect("the daemon builds");
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn(app.run(shutdown.clone()));

    let plain = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(stack.host.clone())
        .port(stack.smtp)
        .build();
    let pem = std::fs::read(&stack.ca).expect("the CA");
    let tls = TlsParameters::builder(stack.host.clone())
        .add_root_certificate(Certificate::from_pem(&pem).expect("PEM"))
        .build_rustls()
        .expect("TLS");
    let submission = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(stack.host.clone())
        .port(stack.submission)
        .tls(Tls::Required(tls))
        .credentials(Credentials::new(AGENT.to_string(), stack.password.clone()))
        .build();
    let mut agent_box = login(&stack, AGENT).await;
    let mut customer_box = login(&stack, CUSTOMER).await;
    let run = std::process::id();
    let mut relay_times = Vec::new();
    for round in 0..ROUNDS {
        let marker = format!("relaybench-{run}-{round}");
        let customer_mail = format!(
            "From: {CUSTOMER}\r\nTo: {SUPPORT}\r\nSubject: {marker}\r\nMessage-ID: <{marker}@customer.test>\r\n\r\nHelp, round {round}.\r\n"
        );
        let envelope = Envelope::new(
            Some(CUSTOMER.parse().unwrap()),
            vec![SUPPORT.parse().unwrap()],
        )
        .unwrap();
        plain
            .send_raw(&envelope, customer_mail.as_bytes())
            .await
            .expect("customer mail sent");
        let notification = wait_for(&mut agent_box, &marker).await;
        let parent = notification.message_id.clone().expect("a Message-ID");
        let reply = format!(
            "From: Bench Agent <{AGENT}>\r\nTo: {SUPPORT}\r\nSubject: Re: {}\r\nMessage-ID: <r-{marker}@agent.test>\r\nIn-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n\r\nAnswer {round}.\r\n\r\n-- \r\nBench Agent\r\n",
            notification.subject
        );
        let envelope =
            Envelope::new(Some(AGENT.parse().unwrap()), vec![SUPPORT.parse().unwrap()]).unwrap();
        let submitted = Instant::now();
        submission
            .send_raw(&envelope, reply.as_bytes())
            .await
            .expect("agent reply submitted");
        let relayed = wait_for(
            &mut customer_box,
            &format!("Re: [Ticket #{}] {marker}", round + 1),
        )
        .await;
        relay_times.push(submitted.elapsed());
        assert!(relayed.text.contains(&format!("Answer {round}.")));
    }
    shutdown.cancel();
    let _ = daemon.await;
    relay_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("agent submit → relayed reply in the customer's INBOX, {ROUNDS} tickets:");
    println!(
        "  min {:.0} ms   median {:.0} ms   max {:.0} ms",
        ms(relay_times[0]),
        ms(relay_times[ROUNDS / 2]),
        ms(relay_times[ROUNDS - 1])
    );
}
