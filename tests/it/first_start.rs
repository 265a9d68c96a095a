//! The first start of a support mailbox that already holds mail (issue 12),
//! on the real Dovecot and Postfix: read mail is left alone, unread mail
//! becomes tickets, an old one without a confirmation to its sender, a
//! fresh one with; mail arriving later is taken as usual, and a restart
//! takes nothing old.

use std::time::Duration;

use postdesk::store::Store;

use crate::support::{
    Daemon, Stack, append, fresh_support_box, inbox, send, settings, temp_dir, unique,
    wait_for_mail, written,
};

/// The ticket the stored mail `message_id` is on, if any.
fn ticket_of(store: &Store, message_id: &str) -> Option<postdesk::domain::TicketNumber> {
    store
        .explain(message_id)
        .expect("explain reads")
        .map(|e| e.ticket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_leaves_read_mail_alone_and_confirms_only_fresh_mail() {
    let stack = Stack::from_env();
    let support = fresh_support_box(&stack).await;
    let (reader, late, fresh) = (
        fresh_support_box(&stack).await,
        fresh_support_box(&stack).await,
        fresh_support_box(&stack).await,
    );
    let marker = unique("first");
    let days = chrono::Duration::days;
    let read_a = written(&reader, &support, &format!("Read A {marker}"), days(30));
    let read_b = written(&reader, &support, &format!("Read B {marker}"), days(3));
    let old = written(&late, &support, &format!("Old unread {marker}"), days(5));
    let new = written(
        &fresh,
        &support,
        &format!("New unread {marker}"),
        chrono::Duration::minutes(10),
    );
    append(
        &stack,
        &support,
        &[
            (&read_a.1, true),
            (&old.1, false),
            (&read_b.1, true),
            (&new.1, false),
        ],
    )
    .await;

    let dir = temp_dir();
    let daemon = Daemon::start(settings(&stack, &support, dir.path())).await;
    let store = daemon.store.clone();
    wait_for_mail(&stack, &fresh, &format!("New unread {marker}")).await;

    let old_ticket = ticket_of(&store, &old.0).expect("the old unread mail made a ticket");
    let new_ticket = ticket_of(&store, &new.0).expect("the new unread mail made a ticket");
    assert_ne!(old_ticket, new_ticket);
    for read in [&read_a, &read_b] {
        assert_eq!(ticket_of(&store, &read.0), None, "a read mail was taken");
    }
    let explained = store.explain(&old.0).unwrap().unwrap();
    assert!(
        explained
            .classification
            .contains("no confirmation: the mail is 5 days old"),
        "{}",
        explained.classification
    );
    let detail = store.ticket_detail(old_ticket).unwrap().unwrap();
    let kinds: Vec<&str> = detail
        .messages
        .iter()
        .filter(|m| m.direction == "out")
        .map(|m| m.kind.as_str())
        .collect();
    assert!(!kinds.contains(&"confirmation"), "{kinds:?}");
    assert!(
        kinds.contains(&"notification"),
        "the agents are told: {kinds:?}"
    );

    // A mail after the start is taken as usual, then a restart takes
    // nothing old.
    send(
        &stack,
        &fresh,
        &support,
        &format!("Later {marker}"),
        "Hello again",
    )
    .await;
    wait_for_mail(&stack, &fresh, &format!("Later {marker}")).await;
    daemon.stop().await;
    let daemon = Daemon::start(settings(&stack, &support, dir.path())).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(daemon.store.list_tickets(None).unwrap().len(), 3);
    daemon.stop().await;

    // Whatever the old mail could have caused has long been sent by now.
    assert!(
        inbox(&stack, &late).await.is_empty(),
        "the old mail's sender got mail"
    );
    assert!(
        inbox(&stack, &reader).await.is_empty(),
        "a read mail's sender got mail"
    );
    let support_box = inbox(&stack, &support).await;
    assert_eq!(support_box.len(), 5, "nothing left the support box");
    assert!(support_box.iter().all(|(_, seen)| *seen));
}
