//! Unit tests: one small invented mail per signal.

use proptest::prelude::*;

use super::super::parse::{ParsedMail, parse};
use super::*;

pub(super) fn own() -> OwnIdentity {
    OwnIdentity {
        addresses: vec!["support@postdesk.test".to_string()],
        message_id_domain: "postdesk.test".to_string(),
        loop_header_value: "a1b2c3".to_string(),
        lists: vec!["support.postdesk.test".to_string()],
    }
}

/// A mail from a person, with `extra` headers added (and replacing the
/// default From or Subject when given).
pub(super) fn mail(extra: &[(&str, &str)], body: &str) -> ParsedMail {
    let mut raw = String::new();
    let given = |name: &str| extra.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !given("From") {
        raw.push_str("From: Ann Example <ann@example.test>\r\n");
    }
    if !given("Subject") {
        raw.push_str("Subject: Printer on fire\r\n");
    }
    raw.push_str("To: support@postdesk.test\r\nMessage-ID: <m1@example.test>\r\n");
    for (name, value) in extra {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    parse(raw.as_bytes()).expect("the test mail parses")
}

pub(super) fn kind_of(extra: &[(&str, &str)]) -> MailKind {
    classify(&mail(extra, "Hello.\r\n"), &own()).kind
}

fn bounce_info(c: &Classification) -> &BounceInfo {
    match &c.kind {
        MailKind::Bounce(info) => info,
        other => panic!("not a bounce: {other:?} ({})", c.reason),
    }
}

const DSN: &str = "Content-Type: multipart/report; report-type=delivery-status;\r
 boundary=\"B\"\r
\r
--B\r
Content-Type: text/plain\r
\r
Your message could not be delivered.\r
--B\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.example.test\r
\r
Final-Recipient: rfc822; Gone@Example.test\r
Action: ACTION\r
Status: STATUS\r
--B\r
Content-Type: text/rfc822-headers\r
\r
From: support@postdesk.test\r
Message-ID: <pd.42.abc@postdesk.test>\r
Subject: [Ticket #42] Printer\r
--B--\r
";

fn dsn(action: &str, status: &str) -> ParsedMail {
    let raw = format!(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.test>\r\nSubject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n{}",
        DSN.replace("ACTION", action).replace("STATUS", status)
    );
    parse(raw.as_bytes()).expect("the DSN parses")
}

#[test]
fn a_person_is_human_and_may_get_a_reply() {
    let c = classify(&mail(&[], "Hello.\r\n"), &own());
    assert_eq!(c.kind, MailKind::Human);
    assert!(!c.suppress_auto_reply, "{}", c.reason);
}

#[test]
fn own_mail_by_loop_header_or_by_address_and_message_id() {
    assert_eq!(kind_of(&[("X-Postdesk-Loop", "a1b2c3")]), MailKind::OwnMail);
    let ours = mail(&[("From", "support@postdesk.test")], "x");
    let mut ours = ours;
    ours.message_id = Some("pd.1.x@postdesk.test".to_string());
    assert_eq!(classify(&ours, &own()).kind, MailKind::OwnMail);
    // Our From with a foreign Message-ID: a person using our address.
    let c = classify(&mail(&[("From", "support@postdesk.test")], "x"), &own());
    assert_eq!(c.kind, MailKind::Human);
    assert!(c.suppress_auto_reply);
    // Another postdesk's loop marker: a person, but never answered.
    let c = classify(&mail(&[("X-Postdesk-Loop", "other")], "x"), &own());
    assert_eq!((c.kind, c.suppress_auto_reply), (MailKind::Human, true));
}

#[test]
fn a_dsn_is_a_bounce_tied_to_the_original() {
    let c = classify(&dsn("failed", "5.1.1"), &own());
    let info = bounce_info(&c);
    assert_eq!(info.original_message_ids, vec!["pd.42.abc@postdesk.test"]);
    assert_eq!(info.failed_recipients, vec!["gone@example.test"]);
    assert_eq!(info.status.as_deref(), Some("5.1.1"));
    assert!(info.is_permanent());
    assert!(c.suppress_auto_reply);
    assert!(c.reason.contains("delivery-status"), "{}", c.reason);
}

#[test]
fn a_dsn_that_reports_a_delay_is_not_a_bounce() {
    let c = classify(&dsn("delayed", "4.4.1"), &own());
    assert_eq!(c.kind, MailKind::AutoReply, "{}", c.reason);
    let c = classify(&dsn("failed", "4.0.0"), &own());
    assert!(!bounce_info(&c).is_permanent());
}

#[test]
fn text_bounces_are_read_too() {
    let body = "This is a permanent error.\r\n\r\n  gone@example.test\r\n    550 5.1.1 User unknown\r\n\r\n------ This is a copy of the message\r\n\r\nMessage-ID: <pd.7.x@postdesk.test>\r\n";
    let m = mail(
        &[
            (
                "From",
                "Mail Delivery System <Mailer-Daemon@mx.example.test>",
            ),
            (
                "X-Failed-Recipients",
                "Gone@example.test, other@example.test",
            ),
            ("In-Reply-To", "<pd.7.x@postdesk.test>"),
        ],
        body,
    );
    let c = classify(&m, &own());
    let info = bounce_info(&c);
    assert_eq!(
        info.failed_recipients,
        vec!["gone@example.test", "other@example.test"]
    );
    assert_eq!(info.status.as_deref(), Some("5.1.1"));
    assert_eq!(info.original_message_ids, vec!["pd.7.x@postdesk.test"]);
    // qmail names the recipient as `<addr>:` and the sender is enough.
    let m = mail(
        &[
            ("From", "MAILER-DAEMON@mx.example.test"),
            ("Subject", "failure notice"),
        ],
        "Sorry.\r\n\r\n<gone@example.test>:\r\nmailbox unknown\r\n",
    );
    assert_eq!(
        bounce_info(&classify(&m, &own())).failed_recipients,
        vec!["gone@example.test"]
    );
}

#[test]
fn a_bounce_subject_needs_a_machine_sender() {
    for subject in [
        "Undeliverable: Printer",
        "Returned mail: User unknown",
        "Mail delivery failed: returning message to sender",
        "Delivery Status Notification (Failure)",
        "Undelivered Mail Returned to Sender",
        "Unzustellbar: Drucker",
        "Non remis : Imprimante",
        "Onbestelbaar: Printer",
        "No se puede entregar: Impresora",
        "Olevererbart: Skrivare",
        "Nie można dostarczyć: Drukarka",
        "Недоставляемое сообщение",
        "配信不能: プリンター",
    ] {
        let k = kind_of(&[("Subject", subject), ("Return-Path", "<>")]);
        assert!(matches!(k, MailKind::Bounce(_)), "{subject}: {k:?}");
        let k = kind_of(&[("Subject", subject), ("From", "postmaster@example.test")]);
        assert!(matches!(k, MailKind::Bounce(_)), "{subject}: {k:?}");
        assert_eq!(
            kind_of(&[("Subject", subject)]),
            MailKind::Human,
            "{subject}"
        );
    }
}

#[test]
fn bounces_win_over_auto_submitted_and_lists() {
    let k = kind_of(&[
        ("X-Failed-Recipients", "a@example.test"),
        ("Auto-Submitted", "auto-replied"),
    ]);
    assert!(matches!(k, MailKind::Bounce(_)));
    let k = kind_of(&[("From", "MAILER-DAEMON@x.test"), ("Precedence", "bulk")]);
    assert!(matches!(k, MailKind::Bounce(_)));
}

#[test]
fn rfc3834_and_vendor_headers_mark_auto_replies() {
    for header in [
        ("Auto-Submitted", "auto-replied"),
        ("Auto-Submitted", "auto-generated"),
        ("Auto-Submitted", "Auto-Replied (vacation)"),
        ("X-Autoreply", "yes"),
        ("X-Autorespond", "Vacation"),
        ("X-Autogenerated", "Reply"),
        ("Precedence", "auto_reply"),
        ("X-Precedence", "auto_reply"),
        ("X-Mailer", "vacation 1.2"),
        ("X-Apple-Action", "VACATION"),
        ("X-POST-MessageClass", "9; Autoresponder"),
        ("X-JIRA-FingerPrint", "978a1eb5"),
    ] {
        assert_eq!(kind_of(&[header]), MailKind::AutoReply, "{header:?}");
    }
    assert_eq!(kind_of(&[("Auto-Submitted", "no")]), MailKind::Human);
    assert_eq!(kind_of(&[("X-Autogenerated", "Forward")]), MailKind::Human);
    // Auto-Submitted beats Precedence: bulk.
    let k = kind_of(&[("Auto-Submitted", "auto-generated"), ("Precedence", "bulk")]);
    assert_eq!(k, MailKind::AutoReply);
}

#[test]
fn out_of_office_subjects_of_many_languages() {
    for subject in [
        "Out of Office: Printer",
        "Out of Office AutoReply: Printer",
        "Automatic reply: Printer",
        "Auto-Reply: Printer",
        "Autoreply: Printer",
        "Auto reply: Printer",
        "AutoRespons :Nyaan?",
        "[Auto-Reply] Printer",
        "Abwesenheitsnotiz: Drucker",
        "Automatische Antwort: Drucker",
        "Réponse automatique : Imprimante",
        "Absence: Imprimante",
        "Respuesta automática: Impresora",
        "Fuera de la oficina: Impresora",
        "Risposta automatica: Stampante",
        "Fuori sede: Stampante",
        "Automatisch antwoord: Printer",
        "Afwezig: Printer",
        "Resposta automática: Impressora",
        "Ausente: Impressora",
        "Autosvar: Skrivare",
        "Frånvaro: Skrivare",
        "Poissa: Tulostin",
        "Automaattinen vastaus: Tulostin",
        "Automatyczna odpowiedź: Drukarka",
        "Автоответ: Принтер",
        "自动回复: 打印机",
        "自動応答：プリンター",
        "【自动回复】打印机",
        "자동 응답: 프린터",
        "Ann Example is out of the office.",
        "Ann Example/ACME ist außer Haus",
        "Vacation reply: Printer",
        "Out of office",
    ] {
        assert_eq!(
            kind_of(&[("Subject", subject)]),
            MailKind::AutoReply,
            "{subject}"
        );
    }
    for subject in [
        "Autoreply settings question",
        "Absence request for next week",
        "Re: Out of office",
        "Out of office hours support?",
        "Fwd: Automatic reply: Printer",
        "Read: the manual",
        "Vacation: dates for July",
        "Re: Abwesenheitsnotiz: Drucker",
    ] {
        assert_eq!(
            kind_of(&[("Subject", subject)]),
            MailKind::Human,
            "{subject}"
        );
    }
}

#[test]
fn read_receipts_are_auto_replies() {
    let k = kind_of(&[
        ("Subject", "Read: Printer"),
        ("Content-Type", "application/ms-tnef"),
    ]);
    assert_eq!(k, MailKind::AutoReply);
    let k = kind_of(&[(
        "Content-Type",
        "multipart/report; report-type=disposition-notification; boundary=\"x\"",
    )]);
    assert_eq!(k, MailKind::AutoReply);
}

#[test]
fn list_headers_and_bulk_precedence_mark_lists() {
    for header in [
        ("List-Id", "<help.lists.example.test>"),
        ("List-Unsubscribe", "<mailto:leave@example.test>"),
        ("List-Post", "<mailto:help@lists.example.test>"),
        ("X-Mailing-List", "help@lists.example.test"),
        ("Precedence", "list"),
    ] {
        assert_eq!(kind_of(&[header]), MailKind::List, "{header:?}");
    }
    for header in [("Precedence", "bulk"), ("X-Precedence", "junk")] {
        assert_eq!(kind_of(&[header]), MailKind::Bulk, "{header:?}");
    }
    // A list header beside `bulk` is a list.
    let both = [("Precedence", "bulk"), ("List-Id", "<a.example.test>")];
    assert_eq!(kind_of(&both), MailKind::List);
}

#[test]
fn a_null_return_path_alone_is_a_machine() {
    let c = classify(&mail(&[("Return-Path", "<>")], "x"), &own());
    assert_eq!((c.kind, c.suppress_auto_reply), (MailKind::AutoReply, true));
}

#[test]
fn some_people_get_no_automatic_reply() {
    for from in [
        "noreply@example.test",
        "no-reply@example.test",
        "no_reply+x@example.test",
        "donotreply@example.test",
        "do-not-reply@example.test",
        "gmail-noreply@example.test",
        "postmaster@example.test",
        "bounces+123@example.test",
    ] {
        let c = classify(&mail(&[("From", from)], "x"), &own());
        assert_eq!(c.kind, MailKind::Human, "{from}");
        assert!(c.suppress_auto_reply, "{from}");
    }
    for header in [
        ("X-Spam-Flag", "YES"),
        ("X-Auto-Response-Suppress", "All"),
        ("X-Auto-Response-Suppress", "DR, OOF, AutoReply"),
    ] {
        let c = classify(&mail(&[header], "x"), &own());
        assert_eq!(c.kind, MailKind::Human, "{header:?}");
        assert!(c.suppress_auto_reply, "{header:?}");
    }
    for header in [
        ("X-Spam-Flag", "NO"),
        ("X-Auto-Response-Suppress", "DR, RN, NRN"),
    ] {
        let c = classify(&mail(&[header], "x"), &own());
        assert!(!c.suppress_auto_reply, "{header:?}");
    }
    let arf = mail(
        &[(
            "Content-Type",
            "multipart/report; report-type=feedback-report; boundary=\"x\"",
        )],
        "--x\r\nContent-Type: text/plain\r\n\r\nabuse\r\n--x--\r\n",
    );
    let c = classify(&arf, &own());
    assert_eq!((c.kind, c.suppress_auto_reply), (MailKind::Human, true));
}

proptest! {
    #[test]
    fn never_panics_on_odd_headers(
        name in "(Auto-Submitted|Precedence|Return-Path|Subject|Content-Type|X-Failed-Recipients|From|List-Id)",
        value in "\\PC{0,40}",
        body in "\\PC{0,200}",
    ) {
        let raw = format!("From: a@example.test\r\n{name}: {value}\r\n\r\n{body}");
        if let Ok(m) = parse(raw.as_bytes()) {
            let c = classify(&m, &own());
            prop_assert!(!c.reason.is_empty());
            prop_assert!(c.kind == MailKind::Human || c.suppress_auto_reply);
        }
    }
}
