//! XOAUTH2 (issue 12 §2) on a real Dovecot and Postfix with no outside
//! network: a private stack whose Dovecot checks every token at the fake
//! provider's introspection endpoint (`oauth/provider.rs`), IMAP and SMTP
//! submission both. The real daemon runs as a child process with tokens
//! that live 3 s: mail keeps flowing in and out across many refreshes and
//! forced re-logins, the rotated refresh token is on disk, a revoked one is
//! reported once (log, `/metrics`, `/healthz`) without a crash or a
//! hammered endpoint, and a newly stored one recovers everything that
//! waited. `oauth authorize` runs the device flow against the same fake.

#[path = "oauth/provider.rs"]
mod provider;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::faults::rig::{DaemonProcess, Log, cli, metric};
use crate::faults::stack::PrivateStack;
use crate::support::{Stack, mails_with_subject, send, unique};
use provider::Provider;

const SUPPORT: &str = "t01@example.test";
const AGENT_KEY: &str = "fault-rig-agent-key-0123456789";
const OK_GAUGE: &str = "postdesk_oauth_ok{queue=\"support\"}";

/// `postdesk.toml` for XOAUTH2 on IMAP (plain, loopback) and SMTP
/// (submission, STARTTLS), tokens from `provider`.
fn write_config(stack: &Stack, provider: &Provider, dir: &Path) -> PathBuf {
    let text = format!(
        r#"[support]
address = "{SUPPORT}"
name = "Example Support"
agents = ["agent@example.test"]
public_url = "http://127.0.0.1:8025"

[imap]
auth = "xoauth2"
host = "127.0.0.1"
port = {imap}
tls = "none"
username = "{SUPPORT}"
poll_seconds = 1
timeout_seconds = 10

[smtp]
auth = "xoauth2"
host = "127.0.0.1"
port = {submission}
tls = "starttls"
username = "{SUPPORT}"
ca_file = {ca:?}
timeout_seconds = 10

[oauth]
provider = "custom"
client_id = "postdesk-test"
token_url = "{base}/token"
device_url = "{base}/device"
scopes = ["mail", "offline_access"]
refresh_token_file = {file:?}

[database]
{database}
[web]
listen = "127.0.0.1:0"
agent_token = "{AGENT_KEY}"

[limits]
auto_replies_per_hour = 100000
"#,
        imap = stack.imap_port,
        submission = stack.submission_port,
        ca = stack.ca_file,
        base = provider.base,
        file = dir.join("refresh-token").display().to_string(),
        database = crate::support::test_database(&dir.join("postdesk.db")).toml(),
    );
    let path = dir.join("postdesk.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// `/healthz`: its status code and JSON body.
async fn healthz(web: SocketAddr) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("http://{web}/healthz"))
        .await
        .expect("/healthz answers");
    let code = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (code, serde_json::from_str(&text).expect("JSON"))
}

/// Polls `check` every 100 ms for at most `secs`; on timeout the panic
/// shows the daemon's log.
async fn until<F, Fut>(what: &str, secs: u64, log: &Log, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting until {what}; the daemon's log:\n{}",
            log.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `customer` holds a mail whose subject has `needle` and our tag.
async fn wait_for_reply(stack: &Stack, log: &Log, customer: &str, needle: &str, secs: u64) {
    let what = format!("{customer} gets a reply about {needle}");
    until(&what, secs, log, || async {
        let mails = mails_with_subject(stack, customer, needle).await;
        mails.iter().any(|m| m.subject.contains("[Ticket #"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_mail_flows_across_refreshes_and_a_revoked_token_is_reported_then_recovers() {
    let provider = Provider::start(SUPPORT, Duration::from_secs(3)).await;
    let introspect = format!("{}/introspect", provider.base);
    let ms = PrivateStack::start_with(vec![("MAILSTACK_OAUTH_URL", introspect)]).await;
    let stack = ms.stack.clone();
    let dir = crate::support::temp_dir();
    let token_file = dir.path().join("refresh-token");
    std::fs::write(&token_file, "rt-0\n").expect("the first refresh token");
    let config = write_config(&stack, &provider, dir.path());
    let log = Log::default();
    let daemon = DaemonProcess::spawn(&config, &log);
    let web = daemon.web_addr().await;

    // Phase 1: ~20 s of mail in and confirmations out while tokens expire
    // every 3 s and the IMAP session is cut now and then.
    let mut expected = Vec::new();
    for i in 0..8 {
        let customer = format!("customer{}@example.test", i % 5 + 1);
        let subject = unique("oauth-flow");
        send(&stack, &customer, SUPPORT, &subject, "Hello over XOAUTH2.").await;
        expected.push((customer, subject));
        if i % 3 == 2 {
            ms.kick(SUPPORT).await;
        }
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }
    for (customer, subject) in &expected {
        wait_for_reply(&stack, &log, customer, subject, 60).await;
    }
    let (issued, active) = provider.with(|s| (s.issued, s.active_answers));
    assert!(
        issued >= 5,
        "only {issued} access tokens in ~20 s of 3-s tokens"
    );
    assert!(
        active >= 4,
        "Dovecot accepted only {active} tokens (IMAP and SMTP logins)"
    );
    let on_disk = std::fs::read_to_string(&token_file).expect("the token file");
    let current = provider.with(|s| s.refresh.clone());
    assert_eq!(
        on_disk.trim(),
        current,
        "the rotated refresh token is on disk"
    );
    let mode = std::fs::metadata(&token_file)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(metric(web, OK_GAUGE).await, 1.0);
    let (code, body) = healthz(web).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["oauth"][0]["state"], "ok", "{body}");
    let token = regex::Regex::new(r"(^|[^A-Za-z0-9])(at|rt)-[0-9]").unwrap();
    assert!(
        !token.is_match(&log.text()),
        "a token in the log:\n{}",
        log.text()
    );

    // Phase 1b: a token refused before its expiry (an admin ending
    // sessions) costs one fresh token and one more try at once, for IMAP
    // and for SMTP: no reconnect, no failed delivery.
    let lost = || log.matching("IMAP connection lost").len();
    let connected = || log.matching("Connected to IMAP server").len();
    let (lost_before, connected_before) = (lost(), connected());
    provider.with(|s| s.refuse_next = 1);
    ms.kick(SUPPORT).await;
    until(
        "IMAP logs in again after one refused token",
        30,
        &log,
        || async { provider.with(|s| s.refuse_next) == 0 && connected() > connected_before },
    )
    .await;
    assert_eq!(lost(), lost_before + 1, "only the kick:\n{}", log.text());
    let after_kick = unique("oauth-imap-retry");
    send(&stack, "customer3@example.test", SUPPORT, &after_kick, "Hi").await;
    wait_for_reply(&stack, &log, "customer3@example.test", &after_kick, 60).await;
    // Once the token is due, SMTP logs in anew: that login is refused once.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    provider.with(|s| s.refuse_next = 1);
    let smtp_retry = unique("oauth-smtp-retry");
    send(&stack, "customer4@example.test", SUPPORT, &smtp_retry, "Hi").await;
    wait_for_reply(&stack, &log, "customer4@example.test", &smtp_retry, 60).await;
    assert_eq!(provider.with(|s| s.refuse_next), 0, "SMTP met the refusal");
    assert_eq!(lost(), lost_before + 1, "IMAP was not the one refused");
    let not_sent = log.matching("Could not send").len() + log.matching("refuses our login").len();
    assert_eq!(
        not_sent,
        0,
        "the refused SMTP login was retried at once:\n{}",
        log.text()
    );

    // Phase 2: the provider revokes the refresh token.
    provider.with(|s| s.revoked = true);
    let revoked_at = Instant::now();
    ms.kick(SUPPORT).await;
    let waiting = unique("oauth-revoked");
    send(
        &stack,
        "customer2@example.test",
        SUPPORT,
        &waiting,
        "Sent while revoked.",
    )
    .await;
    until("the gauge says tokens fail", 30, &log, || async {
        metric(web, OK_GAUGE).await == 0.0
    })
    .await;
    let (code, body) = healthz(web).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["oauth"][0]["error"], "revoked", "{body}");
    // A status mail queued meanwhile must wait for SMTP, not fail.
    let (code, _, err) = cli(&config, &["tickets", "set-status", "1", "resolved"]);
    assert_eq!(code, Some(0), "set-status: {err}");
    tokio::time::sleep(Duration::from_secs(15)).await;
    let clear_lines = log.matching("OAuth2 for support: the OAuth2 refresh token");
    assert_eq!(
        clear_lines.len(),
        1,
        "one clear line, not one per retry:\n{}",
        log.text()
    );
    assert!(clear_lines[0].1.contains("postdesk oauth authorize"));
    let asked = provider.with(|s| {
        s.refresh_requests
            .iter()
            .filter(|t| **t >= revoked_at)
            .count()
    });
    assert!(
        asked <= 3,
        "the token endpoint was asked {asked} times in ~20 s while revoked"
    );
    let retries = log.matching("IMAP connection lost").len();
    assert!(retries > 0, "the watcher retries");
    eprintln!(
        "oauth: {issued} tokens issued, {active} accepted by Dovecot in phase 1; while \
         revoked: {asked} token requests, {retries} IMAP reconnect attempts, 1 clear line"
    );
    assert_eq!(
        healthz(web).await.0,
        503,
        "still degraded, and still answering"
    );

    // Phase 3: someone signs in again (`oauth authorize` writes the file).
    provider.with(|s| {
        s.revoked = false;
        s.refresh = "rt-reauthorized".to_string();
    });
    std::fs::write(&token_file, "rt-reauthorized\n").expect("a new refresh token");
    until("the gauge recovers", 60, &log, || async {
        metric(web, OK_GAUGE).await == 1.0
    })
    .await;
    wait_for_reply(&stack, &log, "customer2@example.test", &waiting, 60).await;
    until(
        "the status mail of ticket #1 goes out",
        90,
        &log,
        || async {
            let mails = mails_with_subject(&stack, &expected[0].0, "[Ticket #1]").await;
            mails.len() >= 2
        },
    )
    .await;
    until("/healthz is ok again", 30, &log, || async {
        healthz(web).await.0 == 200
    })
    .await;
    assert_eq!(log.matching("access tokens come again").len(), 1);
    drop(daemon);
}

#[tokio::test]
async fn oauth_authorize_runs_the_device_flow_and_stores_the_refresh_token() {
    let provider = Provider::start(SUPPORT, Duration::from_secs(60)).await;
    let dir = crate::support::temp_dir();
    // The stack is not needed: only the [oauth] keys count here.
    let stack = Stack {
        host: "127.0.0.1".into(),
        imap_port: 9,
        imaps_port: 9,
        smtp_port: 9,
        submission_port: 9,
        submissions_port: 9,
        ca_file: String::new(),
        password: String::new(),
    };
    let config = write_config(&stack, &provider, dir.path());
    let cfg = config.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || cli(&cfg, &["oauth", "authorize"]))
        .await
        .expect("the command ran");
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("http://127.0.0.1/verify"), "{out}");
    assert!(out.contains("WDJB-MJHT"), "{out}");
    assert!(
        !out.contains("rt-1") && !err.contains("rt-1"),
        "no token is printed"
    );
    let file = dir.path().join("refresh-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), "rt-1");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let (polls, scope) = provider.with(|s| (s.device_polls.clone(), s.device_scope.clone()));
    assert_eq!(polls.len(), 3, "pending twice, then the token");
    for pair in polls.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(900),
            "polled again after {gap:?}"
        );
    }
    assert_eq!(scope.as_deref(), Some("mail offline_access"));

    let cfg = config.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        cli(&cfg, &["oauth", "authorize", "--mailbox", "nosuch"])
    })
    .await
    .expect("the command ran");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nosuch"), "{err}");
}

#[test]
fn check_config_names_the_missing_oauth_key() {
    let dir = crate::support::temp_dir();
    let config = dir.path().join("postdesk.toml");
    std::fs::write(
        &config,
        "[imap]\nauth = \"xoauth2\"\nusername = \"support@example.test\"\n\
         [oauth]\nprovider = \"custom\"\nclient_id = \"x\"\nrefresh_token_file = \"/tmp/rt\"\n",
    )
    .unwrap();
    let (code, _, err) = cli(&config, &["check-config"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("oauth.token_url"), "{err}");
    // Not used: the same [oauth] is no error.
    std::fs::write(
        &config,
        "[oauth]\nprovider = \"custom\"\nclient_id = \"x\"\nrefresh_token_file = \"/tmp/rt\"\n",
    )
    .unwrap();
    let (code, _, err) = cli(&config, &["check-config"]);
    assert_eq!(code, Some(0), "{err}");
}
