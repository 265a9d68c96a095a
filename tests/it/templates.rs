//! The company's own wording (issue 13 §2): a queue with `language = "de"`
//! confirms in German on the real stack while the English queue beside it
//! stays English; `templates show` prints a queue's override; a broken
//! template makes `check-config` exit 2 naming its file and line.

use crate::support::*;
use postdesk::settings::Settings;

/// The test settings on `support`, with `kunden` (German) as a second
/// mailbox.
fn german_queue(stack: &Stack, support: &str, kunden: &str, dir: &std::path::Path) -> Settings {
    let env = [
        ("SUPPORT__ADDRESS", support.to_string()),
        ("SUPPORT__NAME", "Example Support".to_string()),
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
        ("MAILBOX__0__QUEUE", "kunden".to_string()),
        ("MAILBOX__0__ADDRESS", kunden.to_string()),
        ("MAILBOX__0__NAME", "Beispiel Kundendienst".to_string()),
        ("MAILBOX__0__LANGUAGE", "de".to_string()),
        ("MAILBOX__0__IMAP__USERNAME", kunden.to_string()),
    ];
    let env = env
        .into_iter()
        .chain(test_database(&dir.join("postdesk.db")).env())
        .map(|(k, v)| (format!("POSTDESK__{k}"), v))
        .collect();
    Settings::load_with_env(None, env).expect("a German queue is valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_german_queue_confirms_in_german_and_the_english_one_in_english() {
    let stack = Stack::from_env();
    let (support, kunden) = (
        fresh_support_box(&stack).await,
        fresh_support_box(&stack).await,
    );
    let dir = temp_dir();
    let daemon = Daemon::start(german_queue(&stack, &support, &kunden, dir.path())).await;
    let customer = "customer4@example.test";
    let (german, english) = (unique("Drucker"), unique("Printer"));
    send(
        &stack,
        customer,
        &kunden,
        &german,
        "Der Drucker <brennt> & raucht.",
    )
    .await;
    send(&stack, customer, &support, &english, "It burns.").await;

    let de = wait_for_mail(&stack, customer, &german).await;
    assert!(
        de.text
            .contains("wir haben Ihre Anfrage erhalten und das Ticket #"),
        "{}",
        de.text
    );
    assert!(
        de.text
            .contains("Den Stand verfolgen Sie hier:\nhttp://127.0.0.1:8025/t/")
    );
    assert!(
        de.text.contains("> Der Drucker <brennt> & raucht."),
        "{}",
        de.text
    );
    assert!(de.text.contains("Beispiel Kundendienst"));
    let html = de.html.clone().expect("an HTML part");
    assert!(html.contains("Alle Ihre Anfragen bei uns"), "{html}");
    assert!(
        html.contains("Der Drucker &lt;brennt&gt; &amp; raucht."),
        "{html}"
    );
    assert!(!html.contains("<brennt>"), "{html}");
    assert!(!de.text.contains("we have received"), "{}", de.text);

    let en = wait_for_mail(&stack, customer, &english).await;
    assert!(
        en.text.contains("we have received your request"),
        "{}",
        en.text
    );
    daemon.stop().await;
}

fn write(dir: &std::path::Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().expect("a folder")).expect("the folder is made");
    std::fs::write(path, text).expect("the template is written");
}

/// `postdesk --config CONFIG ARGS…` with a config of two queues and
/// `templates` as the templates folder.
fn cli(dir: &std::path::Path, templates: &std::path::Path, args: &[&str]) -> std::process::Output {
    let config = dir.join("postdesk.toml");
    let toml = format!(
        "[support]\naddress = \"help@shop.test\"\nname = \"Shop Support\"\n\
         [imap]\nhost = \"imap.shop.test\"\nusername = \"help@shop.test\"\n\
         [[mailbox]]\nqueue = \"billing\"\naddress = \"billing@shop.test\"\n\
         name = \"Shop Billing\"\nlanguage = \"fr\"\nimap.username = \"billing@shop.test\"\n\
         [templates]\ndir = \"{}\"\n",
        templates.display()
    );
    std::fs::write(&config, toml).expect("the config is written");
    let mut all = vec!["--config", config.to_str().expect("a UTF-8 path")];
    all.extend_from_slice(args);
    run_cli(&dir.join("postdesk.db"), &[], &all, None)
}

#[test]
fn templates_show_prints_the_queues_override_and_check_config_refuses_a_broken_one() {
    let dir = temp_dir();
    let templates = dir.path().join("templates");
    write(
        &templates,
        "billing/confirmation.txt",
        "Subject: Merci : {{ subject }}\n\nBonjour {{ requester_name }}, ticket {{ ticket }} ({{ queue_name }}).\n",
    );
    write(&templates, "confirmation.txt", "GLOBAL {{ ticket }}\n");
    let out = cli(
        dir.path(),
        &templates,
        &["templates", "show", "confirmation", "--queue", "billing"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "Subject: Merci : Printer shows E42\n\nBonjour Ann Example, ticket 1042 (Shop Billing).\n"
    );
    // The first queue takes the global file; billing's status is built-in French.
    let out = cli(
        dir.path(),
        &templates,
        &["templates", "show", "confirmation"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "GLOBAL 1042\n");
    let out = cli(
        dir.path(),
        &templates,
        &[
            "templates",
            "show",
            "status",
            "--queue",
            "billing",
            "--html",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("est maintenant <strong>résolue</strong>")
    );
    let out = cli(dir.path(), &templates, &["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    write(
        &templates,
        "billing/status.html",
        "<p>\n{{ ticket }}\n{{ agent_name }}</p>\n",
    );
    let out = cli(dir.path(), &templates, &["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("billing/status.html:3: unknown variable `agent_name`"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no config printed for a refused one");

    write(
        &templates,
        "billing/status.html",
        "<p>{{ ticket }}</p>\n{% for x in %}\n",
    );
    let out = cli(dir.path(), &templates, &["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("billing/status.html:2: "), "{stderr}");
    let out = cli(dir.path(), &templates, &["templates", "show", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
}
