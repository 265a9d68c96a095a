//! Tests of assembling outgoing mails beside the writer (`assemble.rs`).
use std::sync::atomic::AtomicBool;

use chrono::Utc;

use super::*;
use crate::domain::MessageKind;
use crate::ingest::parse::{Mailbox, parse};
use crate::ingest::subject::SubjectTag;
use crate::outbound::compose::{self, Draft, Identity, ThreadHeaders};
use crate::store::Store;

fn me() -> Identity {
    Identity {
        address: "tickets@support.test".into(),
        name: "Support".into(),
        tag: SubjectTag::new("Ticket"),
        loop_value: "loop".into(),
        wording: Default::default(),
    }
}

/// A composed mail, its bytes not assembled, whose text is `text`.
fn composed(message_id: &str, text: String) -> OutgoingMail {
    let draft = Draft {
        kind: MessageKind::Status,
        auto_submitted: Some("auto-generated"),
        automatic_reply: false,
        from_name: "Support".into(),
        to: vec![Mailbox::parse("ann@customer.test", None).unwrap()],
        reply_to: None,
        subject: format!("about {message_id}"),
        html: Some(format!("<p>{text}</p>")),
        text,
        attachments: Vec::new(),
        message_id,
        thread: ThreadHeaders::default(),
    };
    let mail = compose::build(&me(), draft, Utc::now()).unwrap();
    assert!(
        matches!(mail.raw, MailBytes::Parts(_)),
        "composed, not assembled"
    );
    mail
}

/// The outbox rows in the order they were written: Message-ID, and the
/// Message-ID and text the stored bytes carry.
fn outbox(tx: &Tx) -> Vec<(String, String, String)> {
    tx.query_map("SELECT message_id, raw FROM outbox ORDER BY id", [], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })
    .unwrap()
    .map(|row| {
        let (id, raw) = row.unwrap();
        let parsed = parse(&raw).unwrap();
        (id, parsed.message_id.unwrap_or_default(), parsed.text)
    })
    .collect()
}

#[test]
fn kept_mails_reach_the_outbox_in_order_assembled_and_rolled_back_ones_never() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let conn = store.write().unwrap();
    let tx = conn.begin().unwrap();
    let failed_before = AtomicBool::new(false);
    let mut assembler = Assembler::beside_writer(&failed_before);
    let now = Utc::now();
    let large = "x".repeat(ASSEMBLED_BESIDE_MAX);
    // One mail kept with two mails to send, the large one assembled by
    // the writer at once; one rolled back; one more kept.
    for (id, text) in [("a@s.test", "first".to_string()), ("b@s.test", large)] {
        assembler
            .enqueue(&tx, None, composed(id, text), now)
            .unwrap();
    }
    let in_writer: Vec<bool> = assembler
        .this_mail
        .iter()
        .map(|row| matches!(row.mail.raw, MailBytes::Assembled(_)))
        .collect();
    assert_eq!(
        in_writer,
        vec![false, true],
        "only the large one in the writer"
    );
    assembler.keep_mail();
    assembler
        .enqueue(&tx, None, composed("gone@s.test", "never".into()), now)
        .unwrap();
    assembler.drop_mail();
    assembler
        .enqueue(&tx, None, composed("c@s.test", "third".into()), now)
        .unwrap();
    assembler.keep_mail();
    assert!(
        outbox(&tx).is_empty(),
        "no outbox row before the batch ends"
    );
    assembler.finish(&tx).unwrap();
    let rows = outbox(&tx);
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, vec!["a@s.test", "b@s.test", "c@s.test"]);
    for (id, stored_id, text) in &rows {
        assert_eq!(stored_id, id, "each row holds its own mail's bytes");
        let expected = match id.as_str() {
            "a@s.test" => "first",
            "c@s.test" => "third",
            _ => "xxxx",
        };
        assert!(text.starts_with(expected), "{id}: {text:.40}");
    }
    assert!(!failed_before.load(Ordering::Relaxed));
}

#[test]
fn a_failure_beside_the_writer_fails_the_batch_and_the_writer_assembles_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let conn = store.write().unwrap();
    let failed_before = AtomicBool::new(false);
    let now = Utc::now();
    {
        let tx = conn.begin().unwrap();
        let mut assembler = Assembler::beside_writer(&failed_before);
        assembler
            .enqueue(&tx, None, composed("a@s.test", "fine".into()), now)
            .unwrap();
        let mut broken = composed("b@s.test", "broken".into());
        broken.raw = MailBytes::Parts(Box::new(MailParts::without_sender()));
        assembler.enqueue(&tx, None, broken, now).unwrap();
        assembler.keep_mail();
        let err = assembler.finish(&tx).unwrap_err().to_string();
        assert!(
            err.contains("assembling outgoing mail 1") && err.contains("given up"),
            "{err}"
        );
        assert!(failed_before.load(Ordering::Relaxed));
    }
    // The next batch: each row written as its mail is, nothing held back.
    let tx = conn.begin().unwrap();
    let mut assembler = Assembler::beside_writer(&failed_before);
    assembler
        .enqueue(&tx, None, composed("c@s.test", "later".into()), now)
        .unwrap();
    let rows = outbox(&tx);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("c@s.test", "c@s.test")
    );
    assembler.keep_mail();
    assembler.finish(&tx).unwrap();
    assert_eq!(outbox(&tx).len(), 1);
}
