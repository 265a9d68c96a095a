//! Unit tests of issue 12 §4's classes: other helpdesks' acknowledgements,
//! challenge-response systems, and mail through our own group alias (one
//! small invented mail each, in the shapes those systems send).

use super::tests::{kind_of, mail, own};
use super::*;

#[test]
fn rt_acknowledgements_are_auto_replies() {
    let tagged = [(
        "Subject",
        "[rt.example.test #123] AutoReply: Printer on fire",
    )];
    assert_eq!(kind_of(&tagged), MailKind::AutoReply);
    let c = classify(
        &mail(&[("X-RT-Loop-Prevention", "rt.example.test")], "x"),
        &own(),
    );
    assert_eq!((c.kind, c.suppress_auto_reply), (MailKind::AutoReply, true));
    assert!(c.reason.contains("RT"), "{}", c.reason);
    // RT's Precedence: bulk does not make it bulk mail: the loop header wins.
    let rt = [
        ("X-RT-Loop-Prevention", "rt.example.test"),
        ("Precedence", "bulk"),
        ("Subject", "[rt.example.test #7] Printer on fire"),
    ];
    assert_eq!(kind_of(&rt), MailKind::AutoReply);
    // A person's subject about an RT ticket stays a person's.
    let person = [("Subject", "Re: [rt.example.test #123] why no AutoReply?")];
    assert_eq!(kind_of(&person), MailKind::Human);
}

#[test]
fn znuny_otrs_and_zammad_loop_headers_are_auto_replies() {
    for header in [
        ("X-OTRS-Loop", "yes"),
        ("X-OTOBO-Loop", "yes"),
        ("X-Loop", "yes"),
        ("X-Loop", "True"),
    ] {
        assert_eq!(kind_of(&[header]), MailKind::AutoReply, "{header:?}");
    }
    // "no" is no loop, and list software puts an address in X-Loop.
    assert_eq!(kind_of(&[("X-OTRS-Loop", "no")]), MailKind::Human);
    assert_eq!(
        kind_of(&[("X-Loop", "help@lists.example.test")]),
        MailKind::Human
    );
}

#[test]
fn zendesk_and_freshdesk_acknowledgements_are_auto_replies() {
    let zendesk = [
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "All"),
        ("X-Mailer", "Zendesk Mailer"),
        ("X-Zendesk-From-Account-Id", "68b8aed"),
        ("Subject", "[Acme Support] Re: Printer on fire"),
    ];
    assert_eq!(kind_of(&zendesk), MailKind::AutoReply);
    let freshdesk = [
        ("Auto-Submitted", "auto-generated"),
        ("X-Auto-Response-Suppress", "DR, RN, OOF, AutoReply"),
        ("X-FD-Email-Category", "1"),
        ("Subject", "Ticket Received - Printer on fire"),
    ];
    assert_eq!(kind_of(&freshdesk), MailKind::AutoReply);
}

#[test]
fn challenge_response_systems_are_auto_replies() {
    let from_service = [("From", "Spam Arrest <verify@spamarrest.com>")];
    assert_eq!(kind_of(&from_service), MailKind::AutoReply);
    let boxbe = [("From", "Boxbe <notification@mail.boxbe.com>")];
    assert_eq!(kind_of(&boxbe), MailKind::AutoReply);
    assert_eq!(
        kind_of(&[("X-Delivery-Agent", "TMDA/1.1.12 (Ferris Wheel)")]),
        MailKind::AutoReply
    );
    // Sent from the protected person's address, with the service's link.
    let challenge = mail(
        &[("Subject", "Please confirm your message")],
        "To get through, please verify you are human:\r\n\
         https://app.mailinblack.com/challenge?id=42\r\n",
    );
    let c = classify(&challenge, &own());
    assert_eq!(c.kind, MailKind::AutoReply, "{}", c.reason);
    assert!(c.reason.contains("mailinblack.com"), "{}", c.reason);
    // A person who only mentions such a service is a person.
    let mention = mail(&[], "We use https://www.boxbe.com for our inbox.\r\n");
    assert_eq!(classify(&mention, &own()).kind, MailKind::Human);
}

/// Google Groups' DMARC rewrite of Alice's mail to our own alias.
fn via_group(extra: &[(&str, &str)]) -> Classification {
    let mut headers = vec![
        (
            "From",
            "'Alice Example' via Support <support@postdesk.test>",
        ),
        ("List-Id", "Support <support.postdesk.test>"),
        (
            "List-Unsubscribe",
            "<mailto:support+unsubscribe@postdesk.test>",
        ),
        ("List-Post", "<mailto:support@postdesk.test>"),
        ("Precedence", "list"),
        ("Mailing-list", "list support@postdesk.test"),
    ];
    headers.extend_from_slice(extra);
    classify(&mail(&headers, "My printer is on fire.\r\n"), &own())
}

#[test]
fn our_own_group_alias_is_the_persons_direct_mail() {
    let c = via_group(&[
        ("X-Original-From", "Alice Example <alice@customer.test>"),
        ("Reply-To", "Support <support@postdesk.test>"),
    ]);
    assert_eq!(
        (c.kind.clone(), c.suppress_auto_reply),
        (MailKind::Human, false)
    );
    let person = c.person.expect("the person behind the alias");
    assert_eq!(person.address.as_str(), "alice@customer.test");
    assert_eq!(person.name.as_deref(), Some("Alice Example"));
    assert!(
        c.reason.contains("group alias <support.postdesk.test>"),
        "{}",
        c.reason
    );
    // Without X-Original-From, Reply-To names the person.
    let c = via_group(&[("Reply-To", "=?utf-8?q?Al=C3=AFce?= <alice@customer.test>")]);
    let person = c.person.expect("the person from Reply-To");
    assert_eq!(person.address.as_str(), "alice@customer.test");
    assert_eq!(person.name.as_deref(), Some("Alïce"));
}

#[test]
fn a_group_alias_mail_naming_nobody_gets_no_automatic_reply() {
    let c = via_group(&[]);
    assert_eq!((c.kind.clone(), c.person), (MailKind::Human, None));
    assert!(
        c.suppress_auto_reply,
        "our own address must never be answered"
    );
}

#[test]
fn another_list_or_an_auto_reply_through_the_alias_stays_a_machine() {
    // Someone else's list: the List-Id is not ours.
    let other = [("List-Id", "<users.lists.example.test>")];
    assert_eq!(kind_of(&other), MailKind::List);
    // An out-of-office reply that came through our alias is still one.
    let c = via_group(&[
        ("X-Original-From", "alice@customer.test"),
        ("Auto-Submitted", "auto-replied"),
    ]);
    assert_eq!(c.kind, MailKind::AutoReply);
    // The person is never one of our addresses.
    let c = via_group(&[("X-Original-From", "support@postdesk.test")]);
    assert_eq!(c.person, None);
}
