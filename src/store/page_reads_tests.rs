//! The customer's ticket page read in few statements (issue 16 §2): each
//! message gets its own attachments from the one read of them all, the
//! customer sees the requester's and a `cc` participant's mail (in any
//! letter case) and never a stranger's, a failed read leaves its pooled
//! connection in no transaction, and links read inside the pages' own
//! statements open what they did and refuse what they did.

use chrono::Utc;

use super::*;
use crate::ingest::Pipeline;
use crate::settings::Settings;
use crate::store::MailSource;

fn pipeline() -> Pipeline {
    let env = vec![(
        "POSTDESK__SUPPORT__ADDRESS".to_string(),
        "tickets@support.test".to_string(),
    )];
    let settings = Settings::load_with_env(None, env).unwrap();
    Pipeline::new(&settings, "unit-secret-unit-secret")
}

/// A mail from `from`, answering `<first@customer.test>` unless it is
/// that one, with a text file attached when `file` is given.
fn mail(from: &str, id: &str, file: Option<&str>) -> Vec<u8> {
    let answer = if id == "first" {
        String::new()
    } else {
        "In-Reply-To: <first@customer.test>\r\n".to_string()
    };
    let body = match file {
        None => format!("Content-Type: text/plain\r\n\r\nText of {id}.\r\n"),
        Some(name) => format!(
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nText of {id}.\r\n\
             --b\r\nContent-Type: text/plain\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n\
             File {name}.\r\n--b--\r\n"
        ),
    };
    format!(
        "From: {from}\r\nTo: tickets@support.test\r\nSubject: Printer\r\n\
         Message-ID: <{id}@customer.test>\r\n{answer}MIME-Version: 1.0\r\n{body}"
    )
    .into_bytes()
}

#[test]
fn each_message_gets_its_own_attachments_and_only_people_taking_part_are_shown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let pipeline = pipeline();
    let mails = [
        ("ann@customer.test", "first", Some("one.txt")),
        ("ANN@Customer.test", "second", None),
        ("stranger@else.test", "third", Some("stranger.txt")),
        ("Bob@Customer.test", "fourth", Some("four.txt")),
    ];
    for (n, (from, id, file)) in mails.into_iter().enumerate() {
        if n == 3 {
            // Bob takes part as a Cc participant from here on.
            let number: i64 = store
                .read(|c| c.query_row("SELECT max(number) FROM tickets", [], |r| r.get(0)))
                .unwrap();
            store
                .write()
                .unwrap()
                .execute(
                    "INSERT INTO participants (ticket_number, address, role)
                     VALUES (?1, 'bob@customer.test', 'cc')",
                    [number],
                )
                .unwrap();
        }
        store
            .ingest_mail(
                &pipeline,
                mail(from, id, file),
                &MailSource::Pipe,
                Utc::now(),
            )
            .unwrap();
    }
    let number: i64 = store
        .read(|c| c.query_row("SELECT max(number) FROM tickets", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(number, 1, "every mail is on the first ticket");

    let files = |d: &TicketDetail, id: &str| -> Vec<String> {
        let m = d.messages.iter().find(|m| m.message_id.starts_with(id));
        let m = m.unwrap_or_else(|| panic!("{id} is listed"));
        m.attachments.iter().map(|a| a.filename.clone()).collect()
    };
    let agents = store.ticket_detail(TicketNumber(1)).unwrap().unwrap();
    assert_eq!(files(&agents, "first@"), ["one.txt"]);
    assert!(files(&agents, "second@").is_empty());
    assert_eq!(files(&agents, "third@"), ["stranger.txt"]);
    assert_eq!(files(&agents, "fourth@"), ["four.txt"]);
    let shown = |id: &str| {
        let m = agents
            .messages
            .iter()
            .find(|m| m.message_id.starts_with(id));
        m.map(|m| m.shown_to_customer)
    };
    assert_eq!(shown("third@"), Some(false), "a stranger's mail");
    for id in ["first@", "second@", "fourth@"] {
        assert_eq!(shown(id), Some(true), "{id}");
    }

    let customer = store
        .read(|c| detail(c, TicketNumber(1), true))
        .unwrap()
        .unwrap();
    let ids: Vec<&str> = customer
        .messages
        .iter()
        .map(|m| m.message_id.as_str())
        .collect();
    assert!(ids.iter().all(|id| !id.starts_with("third@")), "{ids:?}");
    assert!(
        customer
            .messages
            .iter()
            .all(|m| m.attachments.iter().all(|a| a.filename != "stranger.txt"))
    );
    assert_eq!(files(&customer, "fourth@"), ["four.txt"]);
}

#[test]
fn a_failed_read_in_a_snapshot_leaves_no_transaction_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    for _ in 0..2 {
        let failed: anyhow::Result<i64> = store.read(|c| {
            snapshot(c, || {
                c.query_row("SELECT count(*) FROM tickets", [], |r| r.get::<_, i64>(0))?;
                c.query_row("SELECT no_such_column FROM tickets", [], |r| r.get(0))
            })
        });
        assert!(failed.is_err());
    }
    // The same pooled connection begins a snapshot again (a transaction
    // left open would refuse the nested BEGIN) and sees a later write.
    store
        .ingest_mail(
            &pipeline(),
            mail("ann@customer.test", "first", None),
            &MailSource::Pipe,
            Utc::now(),
        )
        .unwrap();
    let count: i64 = store
        .read(|c| {
            snapshot(c, || {
                c.query_row("SELECT count(*) FROM tickets", [], |r| r.get(0))
            })
        })
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn new_links_are_keyed_by_their_time_and_a_link_of_an_earlier_version_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let now = Utc::now();
    store
        .ingest_mail(
            &pipeline(),
            mail("ann@customer.test", "first", None),
            &MailSource::Pipe,
            now,
        )
        .unwrap();
    // The confirmation's two links: keys in time order (the second they
    // were made, then the hash), so new links are written at the index's end.
    let keys: Vec<String> = store
        .write()
        .unwrap()
        .plain()
        .query_map("SELECT token_hash FROM access_tokens", [], |r| r.get(0))
        .unwrap()
        .collect::<anyhow::Result<_>>()
        .unwrap();
    let second = format!("{:08x}", now.timestamp());
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().all(|k| k.len() == 72 && k.starts_with(&second)),
        "{keys:?}"
    );
    // A link as an earlier version made it: 32 characters, stored by its
    // hash alone.
    let old = crate::tokens::random_token().unwrap();
    store
        .write()
        .unwrap()
        .execute(
            "INSERT INTO access_tokens (token_hash, scope, ticket_number, requester, created_at)
             VALUES (?1, 'ticket', 1, NULL, ?2)",
            crate::sql_params![crate::tokens::sha256_hex(old.as_bytes()), now],
        )
        .unwrap();
    assert_eq!(store.ticket_of_link(&old).unwrap(), Some(TicketNumber(1)));
    assert!(store.ticket_page(&old).unwrap().is_some());
    // Rotated links are of the new form and open the ticket; the old one
    // is revoked with the rest.
    let rotated = store
        .rotate_ticket_links(TicketNumber(1), now)
        .unwrap()
        .unwrap();
    assert_eq!(rotated.ticket_token.len(), crate::tokens::LINK_TOKEN_LEN);
    assert_eq!(
        store.ticket_of_link(&rotated.ticket_token).unwrap(),
        Some(TicketNumber(1))
    );
    assert_eq!(store.ticket_of_link(&old).unwrap(), None);
    // The page reads the token with the ticket, in one statement of its
    // own: it opens and refuses what the lookup above does.
    let page = store.ticket_page(&rotated.ticket_token).unwrap();
    assert_eq!(page.map(|d| d.summary.number), Some(TicketNumber(1)));
    assert!(store.ticket_page(&old).unwrap().is_none(), "revoked");
    assert!(
        store
            .ticket_page(&rotated.requester_token)
            .unwrap()
            .is_none(),
        "a requester link is not a ticket link"
    );
    // A token of the new form that was never issued opens nothing.
    let forged = crate::tokens::link_token(now).unwrap();
    assert_eq!(store.ticket_of_link(&forged).unwrap(), None);
    assert!(store.ticket_page(&forged).unwrap().is_none());
}

#[test]
fn a_requester_link_opens_its_requesters_tickets_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.db")).unwrap();
    let now = Utc::now();
    // Bob writes anew (no answer to ann's mail): a ticket of his own.
    let bobs = "From: bob@customer.test\r\nTo: tickets@support.test\r\nSubject: Scanner\r\n\
                Message-ID: <bobs@customer.test>\r\n\r\nText of bob's.\r\n";
    for raw in [mail("ann@customer.test", "first", None), bobs.into()] {
        store
            .ingest_mail(&pipeline(), raw, &MailSource::Pipe, now)
            .unwrap();
    }
    let number_of = |from: &str| -> i64 {
        store
            .read(|c| {
                c.query_row(
                    "SELECT number FROM tickets WHERE requester = ?1",
                    [from],
                    |r| r.get(0),
                )
            })
            .unwrap()
    };
    let (ann, bob) = (
        TicketNumber(number_of("ann@customer.test")),
        TicketNumber(number_of("bob@customer.test")),
    );
    let links = store.rotate_ticket_links(ann, now).unwrap().unwrap();
    let opened = store.requester_ticket(&links.requester_token, ann).unwrap();
    assert_eq!(opened.map(|d| d.summary.number), Some(ann));
    assert!(
        (store.requester_ticket(&links.requester_token, bob).unwrap()).is_none(),
        "another requester's ticket"
    );
    assert!(
        (store.requester_ticket(&links.ticket_token, ann).unwrap()).is_none(),
        "a ticket link is not a requester link"
    );
    let fresh = store.rotate_ticket_links(ann, now).unwrap().unwrap();
    assert!(
        (store.requester_ticket(&links.requester_token, ann).unwrap()).is_none(),
        "revoked"
    );
    assert!((store.requester_ticket(&fresh.requester_token, ann).unwrap()).is_some());
}
