//! Tests of what an operator sets from outside the file: environment
//! values kept as typed, secrets from `*_file`s, the refusal of clear text
//! to another host and the warnings.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
    Settings::load_with_env(None, env(pairs)).map_err(|e| e.to_string())
}

#[test]
fn environment_strings_keep_their_leading_zeros() {
    let s = load(&[
        ("POSTDESK__SUPPORT__NAME", "007"),
        ("POSTDESK__IMAP__PASSWORD", "0042"),
        ("POSTDESK__SMTP__USERNAME", "1e3"),
        ("POSTDESK__IMAP__MAILBOX", "true"),
    ])
    .unwrap();
    assert_eq!(s.support.name, "007");
    assert_eq!(s.imap.password.expose(), "0042");
    assert_eq!(s.smtp.username, "1e3");
    assert_eq!(s.imap.mailbox, "true");
}

#[test]
fn environment_numbers_booleans_and_lists_still_convert() {
    let s = load(&[
        ("POSTDESK__IMAP__PORT", "1993"),
        ("POSTDESK__IMAP__IDLE", "false"),
        ("POSTDESK__SUPPORT__PLUS_ADDRESSING", "true"),
        ("POSTDESK__SUPPORT__REOPEN_DAYS", "3"),
        ("POSTDESK__SUPPORT__AGENTS", "a@x.test, b@x.test ,"),
    ])
    .unwrap();
    assert_eq!(s.imap.port, 1993);
    assert!(!s.imap.idle);
    assert!(s.support.plus_addressing);
    assert_eq!(s.support.reopen_days, 3.0);
    assert_eq!(s.support.agents, ["a@x.test", "b@x.test"]);
    let one = load(&[("POSTDESK__SUPPORT__AGENTS", "solo@x.test")]).unwrap();
    assert_eq!(one.support.agents, ["solo@x.test"]);
    let err = load(&[("POSTDESK__IMAP__PORT", "port")]).unwrap_err();
    assert!(err.contains("imap.port"), "{err}");
}

#[test]
fn secrets_come_from_files_with_one_newline_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let imap = file("imap", "0042pass\n");
    let smtp = file("smtp", "smtp pass \n\n");
    let secret = file("secret", "0123456789abcdef0123");
    let token = file("token", "fedcba9876543210fedc\r\n");
    let s = load(&[
        ("POSTDESK__IMAP__PASSWORD_FILE", &imap),
        ("POSTDESK__SMTP__PASSWORD_FILE", &smtp),
        ("POSTDESK__SUPPORT__SECRET_FILE", &secret),
        ("POSTDESK__WEB__AGENT_TOKEN_FILE", &token),
    ])
    .unwrap();
    assert_eq!(s.imap.password.expose(), "0042pass");
    assert_eq!(s.smtp.password.expose(), "smtp pass \n");
    assert_eq!(s.support.secret.expose(), "0123456789abcdef0123");
    assert_eq!(s.web.agent_token.expose(), "fedcba9876543210fedc");
    let shown = s.redacted_toml();
    assert!(
        !shown.contains("0042pass") && !shown.contains("fedcba98"),
        "{shown}"
    );
    // A secret from a file is checked like any other.
    let short = file("short", "letmein\n");
    let err = load(&[("POSTDESK__WEB__AGENT_TOKEN_FILE", &short)]).unwrap_err();
    assert!(err.contains("web.agent_token"), "{err}");
}

#[test]
fn a_secret_and_its_file_together_or_an_unreadable_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pw");
    std::fs::write(&path, "from-file\n").unwrap();
    let path = path.display().to_string();
    let err = load(&[
        ("POSTDESK__SMTP__PASSWORD", "inline"),
        ("POSTDESK__SMTP__PASSWORD_FILE", &path),
    ])
    .unwrap_err();
    assert!(
        err.contains("`smtp.password`") && err.contains("`smtp.password_file`"),
        "{err}"
    );
    assert!(
        !err.contains("inline") && !err.contains("from-file"),
        "{err}"
    );
    let missing = dir.path().join("nope").display().to_string();
    let err = load(&[("POSTDESK__IMAP__PASSWORD_FILE", &missing)]).unwrap_err();
    assert!(
        err.contains("imap.password_file") && err.contains(&missing),
        "{err}"
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let err = load(&[(
        "POSTDESK__SUPPORT__SECRET_FILE",
        &empty.display().to_string(),
    )])
    .unwrap_err();
    assert!(err.contains("support.secret_file"), "{err}");
}

#[test]
fn clear_text_goes_only_to_this_machine() {
    for (host_var, tls_var, key) in [
        ("POSTDESK__IMAP__HOST", "POSTDESK__IMAP__TLS", "imap.tls"),
        ("POSTDESK__SMTP__HOST", "POSTDESK__SMTP__TLS", "smtp.tls"),
    ] {
        let err = load(&[(host_var, "mail.provider.test"), (tls_var, "none")]).unwrap_err();
        assert!(
            err.contains(key) && err.contains("mail.provider.test"),
            "{err}"
        );
        for host in ["127.0.0.1", "127.0.0.53", "::1", "localhost"] {
            load(&[(host_var, host), (tls_var, "none")]).unwrap();
        }
        load(&[(host_var, "mail.provider.test"), (tls_var, "starttls")]).unwrap();
    }
}

#[test]
fn example_addresses_and_a_local_public_url_are_warned_about() {
    let defaults = load(&[]).unwrap().warnings();
    assert_eq!(defaults.len(), 2, "{defaults:?}");
    assert!(defaults[0].starts_with("support.public_url `http://127.0.0.1:8025`"));
    assert!(defaults[1].starts_with("support.address `tickets@example.com`"));
    let agents = load(&[
        ("POSTDESK__SUPPORT__ADDRESS", "help@shop.test"),
        ("POSTDESK__SUPPORT__PUBLIC_URL", "https://help.shop.test"),
        (
            "POSTDESK__SUPPORT__AGENTS",
            "ann@shop.test,bob@Mail.Example.COM",
        ),
    ])
    .unwrap()
    .warnings();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert!(agents[0].starts_with("support.agents `bob@Mail.Example.COM`"));
    assert!(agents.iter().all(|w| !w.contains('\n')));
}
