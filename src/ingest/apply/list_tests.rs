//! List mail and the company's own group alias through the whole pure
//! pipeline (issue 12 §4): list mail makes a ticket of kind `list`, one per
//! thread, tells the agents and sends the list nothing; bulk mail and
//! auto-replies that answer no ticket still make none; a mail through our
//! own Google Group makes the person the requester and confirms to them.

use chrono::{DateTime, TimeZone, Utc};

use crate::domain::{MessageKind, Role, TicketNumber};
use crate::ingest::apply::{IngestLookup, Plan, TicketChange, TicketInfo};
use crate::ingest::thread::ThreadLookup;
use crate::ingest::{Outcome, Pipeline};
use crate::settings::Settings;

const SUPPORT: &str = "support@support.test";
const AGENT: &str = "alice@support.test";
const LIST: &str = "users@lists.example.test";
const ALICE: &str = "alice@customer.test";

/// A desk whose one ticket, #3, holds the list message `first@list.test`.
struct Desk;

impl ThreadLookup for Desk {
    fn is_seen(&self, _key: &str) -> anyhow::Result<bool> {
        Ok(false)
    }
    fn ticket_of_message(&self, id: &str) -> anyhow::Result<Option<TicketNumber>> {
        Ok((id == "first@list.test").then_some(TicketNumber(3)))
    }
    fn participants(&self, _t: TicketNumber) -> anyhow::Result<Option<Vec<String>>> {
        Ok(None)
    }
}

impl IngestLookup for Desk {
    fn next_ticket_number(&self) -> anyhow::Result<TicketNumber> {
        Ok(TicketNumber(9))
    }
    fn ticket_info(&self, _t: TicketNumber) -> anyhow::Result<Option<TicketInfo>> {
        Ok(None)
    }
    fn automatic_mails_since(&self, _a: &str, _since: DateTime<Utc>) -> anyhow::Result<u32> {
        Ok(0)
    }
}

fn pipeline() -> Pipeline {
    let env = [
        ("SUPPORT__ADDRESS", SUPPORT),
        ("SUPPORT__AGENTS", AGENT),
        ("SUPPORT__LISTS", "support.support.test"),
    ]
    .into_iter()
    .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string()))
    .collect();
    let settings = Settings::load_with_env(None, env).unwrap();
    Pipeline::new(&settings, "unit-secret")
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
}

fn outcome(headers: &str) -> Outcome {
    let raw = format!(
        "{headers}To: {LIST}\r\nCc: {SUPPORT}\r\nSubject: Printer driver crash\r\n\
         Date: {}\r\n\r\nThe driver crashes on start.\r\n",
        now().to_rfc2822()
    );
    pipeline().process(raw.as_bytes(), &Desk, now()).unwrap()
}

fn stored(headers: &str) -> Box<Plan> {
    match outcome(headers) {
        Outcome::Stored(plan) => plan,
        other => panic!("stored expected: {other:?}"),
    }
}

fn recipients(plan: &Plan) -> Vec<&str> {
    let all = plan.outgoing.iter().flat_map(|m| m.recipients.iter());
    all.map(String::as_str).collect()
}

const LIST_MAIL: &str = "From: Bob <bob@example.test>\r\nMessage-ID: <new@list.test>\r\n\
     List-Id: Users <users.lists.example.test>\r\nList-Unsubscribe: <mailto:leave@lists.example.test>\r\n\
     Precedence: list\r\n";

#[test]
fn list_mail_makes_a_ticket_tells_the_agents_and_answers_nobody() {
    let plan = stored(LIST_MAIL);
    let TicketChange::Create(ticket) = &plan.ticket else {
        panic!("a new ticket expected: {:?}", plan.ticket)
    };
    assert_eq!(ticket.number, TicketNumber(9));
    assert_eq!(plan.message.kind, MessageKind::List);
    assert_eq!(recipients(&plan), vec![AGENT], "only the agents hear of it");
    assert!(
        plan.outgoing
            .iter()
            .all(|m| m.kind == MessageKind::Notification)
    );
    // Its writer is the requester; the list and the Cc are nobody's Cc.
    let people: Vec<(&str, Role)> = plan
        .participants
        .iter()
        .map(|(m, r)| (m.address.as_str(), *r))
        .collect();
    assert_eq!(people, vec![("bob@example.test", Role::Requester)]);
}

#[test]
fn a_reply_on_the_list_joins_its_threads_ticket() {
    let reply = LIST_MAIL.replace(
        "Message-ID: <new@list.test>",
        "Message-ID: <reply@list.test>\r\nIn-Reply-To: <first@list.test>",
    );
    let plan = stored(&reply);
    let TicketChange::Update { number, status, .. } = &plan.ticket else {
        panic!("a follow-up expected: {:?}", plan.ticket)
    };
    assert_eq!(
        (*number, *status),
        (TicketNumber(3), None),
        "no status change"
    );
    assert_eq!(recipients(&plan), vec![AGENT]);
}

#[test]
fn bulk_mail_and_auto_replies_that_answer_no_ticket_make_none() {
    let bulk = "From: News <news@shop.test>\r\nMessage-ID: <n@shop.test>\r\nPrecedence: bulk\r\n";
    let auto = "From: Bob <bob@example.test>\r\nMessage-ID: <a@x.test>\r\nAuto-Submitted: auto-replied\r\n";
    for headers in [bulk, auto] {
        match outcome(headers) {
            Outcome::Ignored { reason, .. } => {
                assert!(reason.contains("answers no ticket"), "{reason}");
            }
            other => panic!("kept apart expected for {headers:?}: {other:?}"),
        }
    }
}

#[test]
fn mail_through_our_google_group_is_the_persons_and_confirmed_to_them() {
    let plan = stored(&format!(
        "From: 'Alice Example' via Support <{SUPPORT}>\r\nMessage-ID: <g1@customer.test>\r\n\
         X-Original-From: Alice Example <{ALICE}>\r\nReply-To: Support <{SUPPORT}>\r\n\
         List-Id: Support <support.support.test>\r\nList-Post: <mailto:{SUPPORT}>\r\n\
         Precedence: list\r\nMailing-list: list {SUPPORT}; contact support+owners@support.test\r\n"
    ));
    let TicketChange::Create(ticket) = &plan.ticket else {
        panic!("a new ticket expected: {:?}", plan.ticket)
    };
    assert_eq!(ticket.requester.address.as_str(), ALICE);
    assert_eq!(plan.message.kind, MessageKind::Customer);
    assert_eq!(plan.message.from.address.as_str(), ALICE);
    let confirmation = plan
        .outgoing
        .iter()
        .find(|m| m.kind == MessageKind::Confirmation)
        .expect("Alice is confirmed");
    assert_eq!(confirmation.recipients, vec![ALICE.to_string()]);
    let mut to = recipients(&plan);
    to.sort();
    assert_eq!(to, vec![ALICE, AGENT], "nothing to our own address");
}

#[test]
fn an_unconfigured_group_alias_is_list_mail_with_the_person_as_requester() {
    let raw = format!(
        "From: 'Alice Example' via Support <{SUPPORT}>\r\nTo: {SUPPORT}\r\n\
         Message-ID: <g2@customer.test>\r\nX-Original-From: Alice Example <{ALICE}>\r\n\
         List-Id: Support <support.support.test>\r\nSubject: Printer\r\n\r\nHelp.\r\n"
    );
    let env = [("SUPPORT__ADDRESS", SUPPORT), ("SUPPORT__AGENTS", AGENT)]
        .into_iter()
        .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string()))
        .collect();
    let unconfigured = Pipeline::new(&Settings::load_with_env(None, env).unwrap(), "s");
    let Outcome::Stored(plan) = unconfigured.process(raw.as_bytes(), &Desk, now()).unwrap() else {
        panic!("list mail makes a ticket")
    };
    let TicketChange::Create(ticket) = &plan.ticket else {
        panic!("a new ticket expected: {:?}", plan.ticket)
    };
    assert_eq!(
        ticket.requester.address.as_str(),
        ALICE,
        "never our own address"
    );
    assert_eq!(plan.message.kind, MessageKind::List);
    assert_eq!(recipients(&plan), vec![AGENT], "nobody is confirmed");
}

#[test]
fn an_agent_named_behind_our_group_alias_does_not_pass_for_a_customer() {
    // The headers that name the person behind the alias are the sender's
    // to write: naming an agent there proves nothing, and must not open a
    // customer's ticket confirmed to the agent either.
    let outcome = outcome(&format!(
        "From: 'Alice' via Support <{SUPPORT}>\r\nMessage-ID: <g3@customer.test>\r\n\
         X-Original-From: Alice <{AGENT}>\r\n\
         List-Id: Support <support.support.test>\r\nList-Post: <mailto:{SUPPORT}>\r\n"
    ));
    match outcome {
        Outcome::Ignored { reason, .. } => {
            assert!(reason.contains("agent's address"), "{reason}")
        }
        other => panic!("an unproven agent's mail naming no ticket is set aside: {other:?}"),
    }
}
