//! Tests of the queues: `[[mailbox]]` overlays, defaults, environment
//! indices, errors that name their mailbox, refused duplicates.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_file(toml: &str, pairs: &[(&str, &str)]) -> Result<Settings, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postdesk.toml");
    std::fs::write(&path, toml).unwrap();
    Settings::load_with_env(Some(&path), env(pairs)).map_err(|e| e.to_string())
}

const TWO: &str = r#"
[support]
address = "help@shop.test"
name = "Shop Support"
agents = ["ann@shop.test"]
lists = ["<support.shop.test>"]

[imap]
host = "imap.shop.test"
username = "help@shop.test"
password = "global-pw"
poll_seconds = 17

[[mailbox]]
queue = "billing"
address = "billing@shop.test"
name = "Shop Billing"
agents = ["carol@shop.test"]
imap.username = "billing@shop.test"
imap.password = "billing-pw"
smtp.port = 2525
"#;

#[test]
fn a_mailbox_overlays_the_global_sections_key_by_key() {
    let s = load_file(TWO, &[]).unwrap();
    let queues = s.queues();
    assert_eq!(queues.len(), 2);
    let (first, billing) = (&queues[0], &queues[1]);
    assert_eq!(first.name, "support");
    assert_eq!(first.imap.password.expose(), "global-pw");
    assert_eq!(billing.name, "billing");
    assert_eq!(billing.display_name, "Shop Billing");
    assert_eq!(billing.agents, ["carol@shop.test"]);
    assert_eq!(billing.imap.username, "billing@shop.test");
    assert_eq!(billing.imap.password.expose(), "billing-pw");
    // Unset keys come from [imap] and [smtp].
    assert_eq!(billing.imap.host, "imap.shop.test");
    assert_eq!(billing.imap.poll_seconds, 17);
    assert_eq!(billing.smtp.port, 2525);
    assert_eq!(first.smtp.port, 587);
    assert_eq!(
        billing.checkpoint_key(),
        "billing@shop.test@imap.shop.test/INBOX"
    );
    assert_eq!(first.checkpoint_key(), "INBOX");
}

#[test]
fn a_mailbox_takes_the_support_name_agents_and_lists_it_does_not_set() {
    let toml = format!(
        "{TWO}\n[[mailbox]]\nqueue = \"sales\"\naddress = \"sales@shop.test\"\nimap.username = \"sales\"\n"
    );
    let s = load_file(&toml, &[]).unwrap();
    let sales = s.queue("Sales").unwrap();
    assert_eq!(sales.display_name, "Shop Support");
    assert_eq!(sales.agents, ["ann@shop.test"]);
    assert_eq!(sales.lists, ["<support.shop.test>"]);
    assert_eq!(sales.index, Some(1));
}

#[test]
fn environment_variables_reach_mailboxes_by_index() {
    let s = load_file(
        TWO,
        &[
            ("POSTDESK__MAILBOX__0__IMAP__PASSWORD", "0042"),
            ("POSTDESK__MAILBOX__0__AGENTS", "x@shop.test, y@shop.test"),
            ("POSTDESK__MAILBOX__1__QUEUE", "sales"),
            ("POSTDESK__MAILBOX__1__ADDRESS", "sales@shop.test"),
            ("POSTDESK__MAILBOX__1__IMAP__USERNAME", "sales@shop.test"),
            ("POSTDESK__MAILBOX__1__IMAP__PORT", "1993"),
        ],
    )
    .unwrap();
    let queues = s.queues();
    assert_eq!(queues[1].imap.password.expose(), "0042");
    assert_eq!(queues[1].agents, ["x@shop.test", "y@shop.test"]);
    assert_eq!(queues[2].name, "sales");
    assert_eq!(queues[2].imap.port, 1993);
    assert_eq!(queues[2].imap.password.expose(), "global-pw");
    // The global variables still work beside them.
    let s = load_file(TWO, &[("POSTDESK__IMAP__PORT", "2993")]).unwrap();
    assert_eq!(s.queues()[1].imap.port, 2993);
    let err = load_file(TWO, &[("POSTDESK__MAILBOX__QUEUE", "x")]).unwrap_err();
    assert!(err.contains("POSTDESK__MAILBOX__0__"), "{err}");
}

#[test]
fn a_bad_key_is_named_with_its_mailbox() {
    let err = load_file(TWO, &[("POSTDESK__MAILBOX__0__IMAP__PORT", "port")]).unwrap_err();
    assert!(err.contains("`mailbox[0].imap.port`"), "{err}");
    let err = load_file(TWO, &[("POSTDESK__MAILBOX__0__IMAP__PORT", "0")]).unwrap_err();
    assert!(err.contains("`mailbox[0].imap.port`"), "{err}");
    let err = load_file(&TWO.replace("smtp.port = 2525", "smtp.color = 1"), &[]).unwrap_err();
    assert!(
        err.contains("mailbox[0].smtp") && err.contains("color"),
        "{err}"
    );
    let err = load_file(
        TWO,
        &[
            ("POSTDESK__MAILBOX__0__SMTP__HOST", "mail.far.test"),
            ("POSTDESK__MAILBOX__0__SMTP__TLS", "none"),
        ],
    )
    .unwrap_err();
    assert!(err.contains("`mailbox[0].smtp.tls`"), "{err}");
    let err = load_file(TWO, &[("POSTDESK__MAILBOX__2__QUEUE", "x")]).unwrap_err();
    assert!(err.contains("`mailbox[1].queue`"), "{err}");
}

#[test]
fn a_mailbox_secret_comes_from_its_own_file_over_the_inherited_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-file\n").unwrap();
    let file = file.display().to_string();
    let s = load_file(
        &TWO.replace("imap.password = \"billing-pw\"", ""),
        &[("POSTDESK__MAILBOX__0__IMAP__PASSWORD_FILE", &file)],
    )
    .unwrap();
    assert_eq!(s.queues()[1].imap.password.expose(), "from-file");
    assert_eq!(s.queues()[0].imap.password.expose(), "global-pw");
    let err = load_file(TWO, &[("POSTDESK__MAILBOX__0__IMAP__PASSWORD_FILE", &file)]).unwrap_err();
    assert!(err.contains("mailbox[0].imap.password"), "{err}");
    assert!(
        !err.contains("billing-pw") && !err.contains("from-file"),
        "{err}"
    );
}

#[test]
fn duplicate_queues_addresses_and_folders_are_refused() {
    let err = load_file(&TWO.replace("\"billing\"", "\"Support\""), &[]).unwrap_err();
    assert!(
        err.contains("`mailbox[0].queue`") && err.contains("support.queue"),
        "{err}"
    );
    let err = load_file(
        &TWO.replace("billing@shop.test\"\nname", "HELP@shop.test\"\nname"),
        &[],
    )
    .unwrap_err();
    assert!(err.contains("`mailbox[0].address`"), "{err}");
    let err = load_file(&TWO.replace("\"billing\"", "\"two words\""), &[]).unwrap_err();
    assert!(
        err.contains("`mailbox[0].queue`") && err.contains("one word"),
        "{err}"
    );
    let err = load_file(
        &TWO.replace("imap.username = \"billing@shop.test\"", ""),
        &[],
    )
    .unwrap_err();
    assert!(err.contains("`mailbox[0].imap.mailbox`"), "{err}");
    // The same account with IMAP off is fine (LMTP-only queue).
    let toml = TWO.replace(
        "imap.username = \"billing@shop.test\"",
        "imap.enabled = false",
    );
    load_file(&toml, &[]).unwrap();
}

#[test]
fn queue_of_address_covers_every_queue_and_its_plus_addresses() {
    let s = load_file(TWO, &[]).unwrap();
    assert_eq!(s.queue_of_address("help@shop.test"), Some("support"));
    assert_eq!(s.queue_of_address("Billing@Shop.Test"), Some("billing"));
    assert_eq!(
        s.queue_of_address("billing+x.y.z@shop.test"),
        Some("billing")
    );
    assert_eq!(s.queue_of_address("billing@other.test"), None);
    assert_eq!(s.queue_of_address("billingx@shop.test"), None);
    assert!(s.is_agent("carol@shop.test") && s.is_agent("ann@shop.test"));
    assert!(s.queues()[1].is_agent("CAROL@shop.test"));
    assert!(!s.queues()[0].is_agent("carol@shop.test"));
}

#[test]
fn check_config_shows_each_mailbox_with_secrets_redacted() {
    let s = load_file(TWO, &[]).unwrap();
    let shown = s.redacted_toml();
    assert!(shown.contains("[[mailbox]]\n"), "{shown}");
    assert!(shown.contains("queue = \"billing\""), "{shown}");
    assert!(shown.contains("imap.password = \"***\""), "{shown}");
    assert!(!shown.contains("billing-pw") && !shown.contains("global-pw"));
}

#[test]
fn one_refresh_token_file_serves_one_oauth2_client_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    // Both queues log in with XOAUTH2; the mailbox inherits [oauth].
    let shared = TWO.replacen("[imap]\n", "[imap]\nauth = \"xoauth2\"\n", 1)
        + &format!(
            "\n[oauth]\nclient_id = \"app-1\"\nrefresh_token_file = \"{}\"\n",
            file.display()
        );
    load_file(&shared, &[]).unwrap();
    let other_client = shared.replace(
        "smtp.port = 2525",
        "smtp.port = 2525\noauth.client_id = \"app-2\"",
    );
    let err = load_file(&other_client, &[]).unwrap_err();
    assert!(
        err.contains("`mailbox[0].oauth.refresh_token_file`")
            && err.contains("another OAuth2 client"),
        "{err}"
    );
}
