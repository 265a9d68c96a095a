//! Who is on a ticket, against the real stack (issue 17, findings 2 and
//! 5): a stranger on the Cc line of a forged or quoting mail is only
//! proposed and never gets a thing (Mallory's INBOX is read back); the
//! requester answering our mail, or an agent with `#cc`, adds a Cc who
//! then gets the replies; addresses that cannot be written to block
//! nothing.

use super::*;

const ANN: &str = "customer1@example.test";
const CAROL: &str = "customer2@example.test";
const EVE: &str = "customer3@example.test";
const DAVE: &str = "customer4@example.test";
const MALLORY: &str = "customer5@example.test";

/// Waits (bounded) for the notification to agent@ whose text contains
/// `needle`.
async fn notification_with(stack: &Stack, marker: &str, needle: &str) -> ParsedMail {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mails = mails_with_subject(stack, AGENT, marker).await;
        if let Some(found) = mails.into_iter().find(|m| m.text.contains(needle)) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no notification saying {needle:?} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The mails of `user` about this test (by its marker).
async fn mails_of(stack: &Stack, user: &str, marker: &str) -> Vec<ParsedMail> {
    mails_with_subject(stack, user, marker).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_the_cc_line_is_only_proposed_and_gets_nothing() {
    let (stack, support, _dir, daemon) = daemon_on_fresh_box().await;
    let marker = unique("mallory");
    let (customer_id, _) = ticket_with_notification(&stack, &support, &marker).await;
    let confirmation = wait_for_mail(&stack, ANN, &marker).await;
    let subject = format!("Re: {}", confirmation.subject);

    // (a) Ann's From forged, the tag kept, Mallory in Cc.
    let (_, forged) = raw_mail(
        ANN,
        &support,
        &subject,
        "Please add my colleague. forged-from",
        &[("Cc", &format!("Mallory <{MALLORY}>"))],
    );
    send_raw(&stack, MALLORY, &support, &forged).await;
    let told = notification_with(&stack, &marker, "forged-from").await;
    assert!(
        told.text.contains(&format!(
            "Proposed Cc (not added; reply with #cc ADDRESS to add): Mallory <{MALLORY}>"
        )),
        "{}",
        told.text
    );
    assert!(told.text.contains("Cc: nobody\n"), "{}", told.text);

    // (b) Anyone quoting Ann's Message-ID, Mallory in Cc.
    let (_, quoting) = raw_mail(
        EVE,
        &support,
        "Re: the printer",
        "Me too. quoting-id",
        &[("References", &format!("<{customer_id}>")), ("Cc", MALLORY)],
    );
    send_raw(&stack, EVE, &support, &quoting).await;
    let latest = notification_with(&stack, &marker, "quoting-id").await;

    let number = number_of(&latest.subject);
    let detail = daemon.store.ticket_detail(number).unwrap().unwrap();
    assert!(
        !detail.participants.iter().any(|p| p == MALLORY),
        "{detail:?}"
    );
    assert_eq!(detail.proposed_cc, vec![MALLORY.to_string()]);

    // The agent answers: Ann gets it, Mallory nothing, ever.
    submit_as_agent(
        &stack,
        &support,
        &agent_reply(&latest, "Press the power button."),
    )
    .await;
    let reply = wait_for_mail(
        &stack,
        ANN,
        &format!("Re: [Ticket #{number}] Help {marker}"),
    )
    .await;
    assert!(reply.text.contains("Press the power button."));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to_mallory = mails_of(&stack, MALLORY, &marker).await;
    assert!(
        to_mallory.is_empty(),
        "Mallory got {:?}",
        to_mallory.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let sent = daemon.store.ticket_detail(number).unwrap().unwrap();
    assert!(
        sent.messages
            .iter()
            .all(|m| !m.text.contains(MALLORY) || m.kind == "notification"),
        "no mail but the agents' notification names Mallory"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_answering_us_or_an_agents_cc_adds_someone_who_then_gets_the_replies() {
    let (stack, support, _dir, daemon) = daemon_on_fresh_box().await;
    let marker = unique("addcc");
    ticket_with_notification(&stack, &support, &marker).await;
    let confirmation = wait_for_mail(&stack, ANN, &marker).await;
    let parent = confirmation.message_id.clone().expect("a Message-ID");

    // (c) The real requester answers our confirmation with Carol in Cc.
    let (_, answer) = raw_mail(
        ANN,
        &support,
        &format!("Re: {}", confirmation.subject),
        "Carol knows the printer. real-answer",
        &[
            ("In-Reply-To", &format!("<{parent}>")),
            ("References", &format!("<{parent}>")),
            ("Cc", &format!("Carol <{CAROL}>")),
        ],
    );
    send_raw(&stack, ANN, &support, &answer).await;
    let told = notification_with(&stack, &marker, "real-answer").await;
    assert!(
        told.text.contains(&format!("Cc: Carol <{CAROL}>\n")),
        "{}",
        told.text
    );
    assert!(!told.text.contains("Proposed Cc"), "{}", told.text);

    // (d) An agent adds Dave with #cc in the same mail as the answer.
    let body = format!("#cc {DAVE}\r\n\r\nCarol and Dave, please check the toner.");
    submit_as_agent(&stack, &support, &agent_reply(&told, &body)).await;
    let number = number_of(&told.subject);
    let needle = format!("Re: [Ticket #{number}] Help {marker}");
    for who in [ANN, CAROL, DAVE] {
        let reply = wait_for_mail(&stack, who, &needle).await;
        assert!(reply.text.contains("please check the toner"), "{who}");
        assert!(
            !reply.text.contains("#cc"),
            "{who}: the command is not relayed"
        );
    }
    let detail = daemon.store.ticket_detail(number).unwrap().unwrap();
    for who in [CAROL, DAVE] {
        assert!(
            detail.participants.iter().any(|p| p == who),
            "{who}: {detail:?}"
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_that_cannot_be_written_to_block_nothing() {
    let (stack, support, dir, daemon) = daemon_on_fresh_box().await;
    let marker = unique("badcc");
    let (mail_id, raw) = raw_mail(
        ANN,
        &support,
        &format!("Help {marker}"),
        "My screen is dark.",
        &[("Cc", "\"bad address\"@evil.test, x@, a@b@c.test")],
    );
    send_raw(&stack, ANN, &support, &raw).await;
    let notification = wait_for_mail(&stack, AGENT, &marker).await;
    let number = number_of(&notification.subject);
    let detail = daemon.store.ticket_detail(number).unwrap().unwrap();
    assert_eq!(
        detail.participants,
        vec![ANN.to_string()],
        "dropped at parse time"
    );
    let explained = daemon.store.explain(&mail_id).unwrap().expect("explained");
    assert!(
        explained.classification.contains("x@") && explained.classification.contains("@evil.test"),
        "the dropped addresses are named: {}",
        explained.classification
    );
    // Rows an older version stored without checking them.
    let db = dir.path().join("postdesk.db");
    crate::support::test_database(&db).execute(
        "INSERT INTO participants (ticket_number, address, role) VALUES
           ($1, '@evil.test', 'cc'), ($1, 'x@', 'cc'), ($1, 'a@b@c.test', 'cc')",
        &[&number.0],
    );

    submit_as_agent(
        &stack,
        &support,
        &agent_reply(&notification, "Try the other cable."),
    )
    .await;
    let reply = wait_for_mail(
        &stack,
        ANN,
        &format!("Re: [Ticket #{number}] Help {marker}"),
    )
    .await;
    assert!(reply.text.contains("Try the other cable."));

    let env = [
        ("POSTDESK__SUPPORT__ADDRESS", support.as_str()),
        ("POSTDESK__SUPPORT__AGENTS", AGENT),
    ];
    let out = run_cli(
        &db,
        &env,
        &["tickets", "set-status", &number.to_string(), "pending"],
        None,
    );
    assert!(
        out.status.success(),
        "set-status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_mail(&stack, ANN, &format!("Help {marker} (pending)")).await;
    let quarantined = daemon.store.quarantine_list().unwrap();
    assert!(quarantined.is_empty(), "{quarantined:?}");
    daemon.stop().await;
}
