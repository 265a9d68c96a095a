//! The command line as scripts use it: exit codes, check-config's errors,
//! warnings and redaction, ingest from a pipe (75 on a config it cannot
//! use), the JSON of `tickets`.

use std::process::Output;

use crate::support::{run_cli, temp_dir};

fn postdesk(dir: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    run_cli(&dir.join("cli.db"), &[], args, stdin)
}

#[test]
fn check_config_names_the_bad_key_and_exits_2() {
    let dir = temp_dir();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[imap]\nport = \"not a port\"\n").unwrap();
    let out = postdesk(
        dir.path(),
        &["check-config", "--config", file.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("imap.port"), "{err}");

    std::fs::write(&file, "[imap]\ntls = \"sometimes\"\n").unwrap();
    let out = postdesk(
        dir.path(),
        &["check-config", "--config", file.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("imap.tls"));

    std::fs::write(&file, "[imap]\nhots = \"typo\"\n").unwrap();
    let out = postdesk(
        dir.path(),
        &["check-config", "--config", file.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hots"),
        "an unknown key is named"
    );
}

#[test]
fn check_config_shows_secrets_as_stars() {
    let dir = temp_dir();
    let file = dir.path().join("good.toml");
    std::fs::write(
        &file,
        "[imap]\npassword = \"hunter2\"\n[smtp]\npassword = \"swordfish\"\n",
    )
    .unwrap();
    let out = postdesk(
        dir.path(),
        &["check-config", "--config", file.to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("hunter2") && !shown.contains("swordfish"));
    assert!(shown.contains("password = \"***\""), "{shown}");
}

#[test]
fn ingest_takes_a_pipe_and_tickets_prints_the_contract_json() {
    let dir = temp_dir();
    let mail = b"From: Ann <ann@customer.test>\r\nTo: tickets@example.com\r\nSubject: Broken\r\nMessage-ID: <cli-1@customer.test>\r\n\r\nIt broke.\r\n";
    let out = postdesk(dir.path(), &["ingest", "-"], Some(mail));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = postdesk(dir.path(), &["ingest", "-"], Some(mail));
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already stored"));

    let empty = postdesk(dir.path(), &["ingest", "-"], Some(b"\r\n"));
    assert_eq!(empty.status.code(), Some(65));
    let missing = postdesk(dir.path(), &["ingest", "/nonexistent/mail.eml"], None);
    assert_eq!(missing.status.code(), Some(65));

    let list = postdesk(dir.path(), &["tickets", "list", "--json"], None);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON");
    let first = &list.as_array().expect("an array")[0];
    for key in [
        "number",
        "subject",
        "status",
        "requester",
        "created_at",
        "last_activity_at",
        "message_count",
    ] {
        assert!(first.get(key).is_some(), "tickets list has {key}");
    }
    assert_eq!(first["status"], "new");
    assert_eq!(first["requester"], "ann@customer.test");

    let show = postdesk(dir.path(), &["tickets", "show", "1", "--json"], None);
    let show: serde_json::Value = serde_json::from_slice(&show.stdout).expect("JSON");
    let messages = show["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "the mail and its queued confirmation");
    for key in ["message_id", "from", "direction", "kind", "date", "text"] {
        assert!(messages[0].get(key).is_some(), "a message has {key}");
    }
    assert_eq!(messages[0]["kind"], "customer");
    assert_eq!(messages[1]["kind"], "confirmation");
    assert_eq!(messages[1]["direction"], "out");

    let explain = postdesk(dir.path(), &["explain", "<cli-1@customer.test>"], None);
    assert!(String::from_utf8_lossy(&explain.stdout).contains("ticket #1"));
}

#[test]
fn mail_text_reaches_the_terminal_with_its_controls_escaped_and_json_exact() {
    // Issue 17: a subject with escape sequences (clear the screen, retitle
    // the terminal) and a right-to-left override, encoded as RFC 2047 so it
    // survives the header.
    let dir = temp_dir();
    let mail = b"From: Ann <ann@customer.test>\r\nTo: tickets@example.com\r\n\
Subject: =?UTF-8?Q?Invoice_=1B[2J=1B]0;pwned=07_=E2=80=AEgpj.exe?=\r\n\
Message-ID: <cli-esc@customer.test>\r\n\r\nBody \x1b[31mred\x1b[0m text.\r\n";
    let out = postdesk(dir.path(), &["ingest", "-"], Some(mail));
    assert_eq!(out.status.code(), Some(0));

    let list = postdesk(dir.path(), &["tickets", "list"], None);
    let shown = String::from_utf8(list.stdout).expect("UTF-8");
    assert!(shown.contains("Invoice"), "{shown}");
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(!shown.contains('\u{202e}'), "{shown:?}");
    assert!(
        shown.contains("\\x1b[2J") && shown.contains("\\u{202e}"),
        "{shown}"
    );

    let show = postdesk(dir.path(), &["tickets", "show", "1"], None);
    let shown = String::from_utf8(show.stdout).expect("UTF-8");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(shown.contains("Body \\x1b[31mred"), "{shown}");

    let json = postdesk(dir.path(), &["tickets", "list", "--json"], None);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let subject = json[0]["subject"].as_str().expect("a subject");
    assert!(
        subject.contains("\u{1b}[2J") && subject.contains('\u{202e}'),
        "exact: {subject:?}"
    );
}

#[test]
fn ingest_with_an_unusable_config_exits_75_so_the_mta_retries() {
    let dir = temp_dir();
    let mail = b"From: Ann <ann@customer.test>\r\nSubject: Hi\r\nMessage-ID: <cli-75@customer.test>\r\n\r\nHello.\r\n";
    let missing = dir.path().join("missing.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[imap]\nport = \"not a port\"\n").unwrap();
    for config in [&missing, &bad] {
        let config = config.to_str().unwrap();
        // No input: it fails before reading any (a pipe closed early would
        // fail the test's write, not the daemon).
        let out = postdesk(dir.path(), &["ingest", "--config", config, "-"], None);
        assert_eq!(
            out.status.code(),
            Some(75),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Other commands still call it a usage error.
        let out = postdesk(dir.path(), &["check-config", "--config", config], None);
        assert_eq!(out.status.code(), Some(2));
    }
    let unreadable_secret = [("POSTDESK__IMAP__PASSWORD_FILE", "/nonexistent/postdesk-pw")];
    let out = run_cli(
        &dir.path().join("cli.db"),
        &unreadable_secret,
        &["ingest", "-"],
        None,
    );
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("imap.password_file") && err.contains("/nonexistent/postdesk-pw"),
        "{err}"
    );
    // Nothing was stored on the way: the retried mail is the first copy.
    let out = postdesk(dir.path(), &["ingest", "-"], Some(mail));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "new ticket #1");
}

#[test]
fn check_config_refuses_clear_text_to_another_host_and_warns_about_examples() {
    let dir = temp_dir();
    let db = dir.path().join("cli.db");
    let out = run_cli(
        &db,
        &[
            ("POSTDESK__SMTP__HOST", "smtp.provider.test"),
            ("POSTDESK__SMTP__TLS", "none"),
        ],
        &["check-config"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("smtp.tls") && err.contains("smtp.provider.test"),
        "{err}"
    );

    // The defaults: a loopback public_url and tickets@example.com.
    let out = run_cli(
        &db,
        &[(
            "POSTDESK__SUPPORT__AGENTS",
            "ann@shop.test, bob@example.com",
        )],
        &["check-config"],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = err.lines().collect();
    assert_eq!(warnings.len(), 3, "{err}");
    assert!(warnings[0].starts_with("postdesk: warning: support.public_url "));
    assert!(warnings[1].starts_with("postdesk: warning: support.address "));
    assert!(warnings[2].starts_with("postdesk: warning: support.agents `bob@example.com`"));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(r#"agents = ["ann@shop.test","bob@example.com"]"#),
        "{shown}"
    );

    let out = run_cli(
        &db,
        &[
            ("POSTDESK__SUPPORT__ADDRESS", "help@shop.test"),
            ("POSTDESK__SUPPORT__PUBLIC_URL", "https://help.shop.test"),
        ],
        &["check-config"],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

fn json_list(dir: &std::path::Path, which: &str) -> Vec<serde_json::Value> {
    let out = postdesk(dir, &[which, "list", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{which} list");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    list.as_array().expect("an array").clone()
}

/// Issue 12 §4: `postdesk ignored list` holds the machine mail that
/// answers no ticket, `quarantine list` only what could not be processed;
/// an ignored mail is retried (once its ticket exists) and dropped by ID.
#[test]
fn ignored_machine_mail_is_listed_apart_and_retried_once_its_ticket_exists() {
    let dir = temp_dir();
    // The customer's out-of-office answers her own mail, which the MTA
    // hands over late: at first it answers no ticket.
    let auto = b"From: Ann <ann@customer.test>\r\nTo: tickets@example.com\r\n\
Subject: Auto: Broken\r\nMessage-ID: <ooo-cli@customer.test>\r\n\
In-Reply-To: <cli-late@customer.test>\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n";
    let out = postdesk(dir.path(), &["ingest", "-"], Some(auto));
    assert_eq!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("ignored: ") && said.contains("answers no ticket"),
        "{said}"
    );
    let junk = b"this is not a mail header\r\nneither is this\r\n\r\nbody\r\n";
    let out = postdesk(dir.path(), &["ingest", "-"], Some(junk));
    assert!(String::from_utf8_lossy(&out.stdout).contains("quarantined: "));

    let ignored = json_list(dir.path(), "ignored");
    assert_eq!(ignored.len(), 1, "{ignored:?}");
    assert_eq!(ignored[0]["dedup_key"], "ooo-cli@customer.test");
    for key in ["id", "size", "reason", "created_at"] {
        assert!(ignored[0].get(key).is_some(), "ignored list has {key}");
    }
    let quarantined = json_list(dir.path(), "quarantine");
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be read")
    );
    let explain = postdesk(dir.path(), &["explain", "<ooo-cli@customer.test>"], None);
    assert!(String::from_utf8_lossy(&explain.stdout).contains("was ignored"));

    let id = ignored[0]["id"].to_string();
    let early = postdesk(dir.path(), &["quarantine", "retry", &id], None);
    assert_eq!(early.status.code(), Some(1), "still answers no ticket");
    assert!(String::from_utf8_lossy(&early.stderr).contains("still ignored"));
    assert_eq!(
        json_list(dir.path(), "ignored").len(),
        1,
        "kept, same entry"
    );

    let mail = b"From: Ann <ann@customer.test>\r\nTo: tickets@example.com\r\n\
Subject: Broken\r\nMessage-ID: <cli-late@customer.test>\r\n\r\nIt broke.\r\n";
    assert_eq!(
        postdesk(dir.path(), &["ingest", "-"], Some(mail))
            .status
            .code(),
        Some(0)
    );
    let retried = postdesk(dir.path(), &["ignored", "retry", &id], None);
    assert_eq!(
        retried.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&retried.stderr)
    );
    assert!(String::from_utf8_lossy(&retried.stdout).contains("added to ticket #1"));
    assert!(json_list(dir.path(), "ignored").is_empty());

    let fault = quarantined[0]["id"].to_string();
    let dropped = postdesk(dir.path(), &["quarantine", "drop", &fault], None);
    assert_eq!(dropped.status.code(), Some(0));
    assert!(json_list(dir.path(), "quarantine").is_empty());
}
