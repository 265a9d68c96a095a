//! Who a mail puts on a ticket (issue 17, finding 2), through the whole
//! pure pipeline against an in-memory store that keeps participants as the
//! real one does: each attack as a mail, the harm asserted absent.

use std::cell::RefCell;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::{MessageKind, Role, Status, TicketNumber};
use crate::ingest::apply::{IngestLookup, Plan, TicketInfo};
use crate::ingest::parse::Mailbox;
use crate::ingest::thread::ThreadLookup;
use crate::ingest::{Outcome, Pipeline};
use crate::settings::Settings;
use crate::tokens::Purpose;

const SUPPORT: &str = "tickets@support.test";
const AGENT: &str = "alice@support.test";
const ANN: &str = "ann@customer.test";
const MALLORY: &str = "mallory@evil.test";
const CAROL: &str = "carol@customer.test";

/// Ticket #1: Ann's, with her first mail `orig@customer.test` stored.
struct Desk {
    pipeline: Pipeline,
    people: RefCell<BTreeMap<String, Role>>,
}

impl Desk {
    fn new() -> Desk {
        let env = [("SUPPORT__ADDRESS", SUPPORT), ("SUPPORT__AGENTS", AGENT)]
            .into_iter()
            .map(|(k, v)| (format!("POSTDESK__{k}"), v.to_string()))
            .collect();
        let settings = Settings::load_with_env(None, env).unwrap();
        let people = BTreeMap::from([(ANN.to_string(), Role::Requester)]);
        Desk {
            pipeline: Pipeline::new(&settings, "unit-secret"),
            people: RefCell::new(people),
        }
    }

    /// Runs a mail through the pipeline and keeps its participants as
    /// `store::ingest::write_plan` does (a proposed row is promoted, no
    /// row is demoted; `#uncc` removes a cc or proposed one).
    fn ingest(&self, raw: &str) -> Box<Plan> {
        let outcome = self
            .pipeline
            .process(raw.as_bytes(), self, Utc::now())
            .unwrap();
        let Outcome::Stored(plan) = outcome else {
            panic!("stored expected: {outcome:?}")
        };
        let mut people = self.people.borrow_mut();
        for (m, role) in &plan.participants {
            let old = people.get(m.address.as_str()).copied();
            if old.is_none() || (old == Some(Role::Proposed) && *role != Role::Proposed) {
                people.insert(m.address.to_string(), *role);
            }
        }
        for a in &plan.removed_participants {
            if matches!(people.get(a.as_str()), Some(Role::Cc | Role::Proposed)) {
                people.remove(a.as_str());
            }
        }
        plan
    }

    fn role(&self, address: &str) -> Option<Role> {
        self.people.borrow().get(address).copied()
    }

    fn signed(&self, purpose: Purpose, agent: Option<&str>) -> String {
        self.pipeline
            .message_id(TicketNumber(1), purpose, agent)
            .unwrap()
    }

    /// An authenticated agent's mail on ticket #1 with `body`.
    fn agent_mail(&self, body: &str) -> String {
        let parent = self.signed(Purpose::Notification, Some(AGENT));
        format!(
            "From: Alice <{AGENT}>\r\nTo: {SUPPORT}\r\nSubject: Re: [Ticket #1] Printer\r\n\
             Message-ID: <{}@support.test>\r\nIn-Reply-To: <{parent}>\r\n\r\n{body}\r\n",
            crate::tokens::random_token().unwrap()
        )
    }
}

impl ThreadLookup for Desk {
    fn is_seen(&self, _key: &str) -> anyhow::Result<bool> {
        Ok(false)
    }
    fn ticket_of_message(&self, id: &str) -> anyhow::Result<Option<TicketNumber>> {
        Ok((id == "orig@customer.test").then_some(TicketNumber(1)))
    }
    fn participants(&self, t: TicketNumber) -> anyhow::Result<Option<Vec<String>>> {
        let people = self.people.borrow();
        let taking_part = people.iter().filter(|(_, r)| r.takes_part());
        Ok((t == TicketNumber(1)).then(|| taking_part.map(|(a, _)| a.clone()).collect()))
    }
}

impl IngestLookup for Desk {
    fn next_ticket_number(&self) -> anyhow::Result<TicketNumber> {
        Ok(TicketNumber(2))
    }
    fn ticket_info(&self, t: TicketNumber) -> anyhow::Result<Option<TicketInfo>> {
        if t != TicketNumber(1) {
            return Ok(None);
        }
        let people = self.people.borrow();
        let cc = people.iter().filter(|(_, r)| **r == Role::Cc);
        Ok(Some(TicketInfo {
            number: t,
            subject: "Printer".to_string(),
            status: Status::Open,
            requester: Mailbox::parse(ANN, None)?,
            cc: cc
                .map(|(a, _)| Mailbox::parse(a, None))
                .collect::<Result<_, _>>()?,
            customer_message_ids: vec!["orig@customer.test".to_string()],
            last_activity_at: Utc::now(),
            queue: "support".into(),
        }))
    }
    fn automatic_mails_since(&self, _a: &str, _since: DateTime<Utc>) -> anyhow::Result<u32> {
        Ok(0)
    }
}

fn customer_mail(from: &str, extra: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: {SUPPORT}\r\n{extra}Subject: Re: [Ticket #1] Printer\r\n\
         Message-ID: <{}@customer.test>\r\n\r\n{body}\r\n",
        crate::tokens::random_token().unwrap()
    )
}

fn notification_text(plan: &Plan) -> &str {
    let n = plan
        .outgoing
        .iter()
        .find(|m| m.kind == MessageKind::Notification);
    &n.expect("a notification to the agents").text
}

/// Every address any mail of the plan goes to.
fn recipients(plan: &Plan) -> Vec<&str> {
    let all = plan.outgoing.iter().flat_map(|m| m.recipients.iter());
    all.map(String::as_str).collect()
}

/// Mallory is not on the ticket, and an agent's reply does not reach her.
fn assert_mallory_kept_out(desk: &Desk, plan: &Plan) {
    assert_eq!(desk.role(MALLORY), Some(Role::Proposed));
    assert!(!recipients(plan).contains(&MALLORY));
    let text = notification_text(plan);
    assert!(
        text.contains(&format!(
            "Proposed Cc (not added; reply with #cc ADDRESS to add): {MALLORY}"
        )),
        "{text}"
    );
    assert!(text.contains("Cc: nobody\n"), "{text}");
    let reply = desk.ingest(&desk.agent_mail("Please restart it."));
    assert_eq!(recipients(&reply), vec![ANN], "the reply goes to Ann only");
    let raw =
        |m: &crate::outbound::compose::OutgoingMail| String::from_utf8_lossy(&m.raw).into_owned();
    assert!(!reply.outgoing.iter().any(|m| raw(m).contains(MALLORY)));
    let again = customer_mail(MALLORY, "", "me again");
    let Outcome::Stored(plan) = desk
        .pipeline
        .process(again.as_bytes(), desk, Utc::now())
        .unwrap()
    else {
        panic!("stored")
    };
    assert!(
        plan.message.thread_reason.contains("does not take part"),
        "a proposed Cc cannot thread by the tag: {}",
        plan.message.thread_reason
    );
}

#[test]
fn a_forged_requester_from_with_the_tag_only_proposes_its_cc() {
    let desk = Desk::new();
    let forged = customer_mail(ANN, &format!("Cc: {MALLORY}\r\n"), "Add my colleague.");
    let plan = desk.ingest(&forged);
    assert_eq!(
        plan.ticket.number(),
        TicketNumber(1),
        "it threads: Ann takes part"
    );
    assert_mallory_kept_out(&desk, &plan);
}

#[test]
fn a_stranger_quoting_a_known_message_id_only_proposes_its_cc() {
    let desk = Desk::new();
    let quoting = customer_mail(
        "eve@evil.test",
        &format!("References: <orig@customer.test>\r\nCc: {MALLORY}\r\n"),
        "Me too.",
    );
    let plan = desk.ingest(&quoting);
    assert_eq!(plan.ticket.number(), TicketNumber(1));
    assert_mallory_kept_out(&desk, &plan);
}

#[test]
fn a_token_in_a_mail_from_someone_else_than_the_requester_adds_nobody() {
    let desk = Desk::new();
    let confirmation = desk.signed(Purpose::Confirmation, None);
    let forwarded = customer_mail(
        "eve@evil.test",
        &format!("In-Reply-To: <{confirmation}>\r\nCc: {MALLORY}\r\n"),
        "Forwarded to me.",
    );
    desk.ingest(&forwarded);
    assert_eq!(desk.role(MALLORY), Some(Role::Proposed));
}

#[test]
fn the_requester_answering_our_confirmation_adds_a_cc_who_gets_the_reply() {
    let desk = Desk::new();
    let confirmation = desk.signed(Purpose::Confirmation, None);
    let real = customer_mail(
        "Ann <ann@customer.test>",
        &format!("In-Reply-To: <{confirmation}>\r\nCc: Carol <{CAROL}>, {AGENT}\r\n"),
        "Carol knows the printer.",
    );
    let plan = desk.ingest(&real);
    assert_eq!(desk.role(CAROL), Some(Role::Cc));
    assert_eq!(desk.role(AGENT), None, "an agent never becomes a Cc");
    let text = notification_text(&plan);
    assert!(text.contains(&format!("Cc: Carol <{CAROL}>\n")), "{text}");
    assert!(!text.contains("Proposed Cc"), "{text}");
    let reply = desk.ingest(&desk.agent_mail("Carol, please check the toner."));
    assert_eq!(recipients(&reply), vec![ANN, CAROL]);
}

#[test]
fn an_agents_cc_command_adds_and_uncc_removes() {
    let desk = Desk::new();
    let forged = customer_mail(ANN, &format!("Cc: {MALLORY}\r\n"), "x");
    desk.ingest(&forged);
    let plan = desk.ingest(&desk.agent_mail(&format!("#cc {CAROL}\r\n\r\nWelcome, Carol.")));
    assert_eq!(desk.role(CAROL), Some(Role::Cc));
    assert_eq!(
        recipients(&plan),
        vec![ANN, CAROL],
        "the same reply reaches Carol"
    );
    let text = customer_mail(ANN, "", "thanks");
    let text = desk.ingest(&text);
    let text = notification_text(&text);
    assert!(text.contains(&format!("Cc: {CAROL}\n")), "{text}");

    let plan = desk.ingest(&desk.agent_mail(&format!("#cc {MALLORY}")));
    assert_eq!(desk.role(MALLORY), Some(Role::Cc), "promoted from proposed");
    assert!(plan.outgoing.is_empty(), "a command alone sends nothing");
    let plan = desk.ingest(&desk.agent_mail(&format!("#uncc {MALLORY}\r\n\r\nBye.")));
    assert_eq!(desk.role(MALLORY), None);
    assert_eq!(recipients(&plan), vec![ANN, CAROL]);
}

#[test]
fn cc_commands_for_our_own_addresses_or_the_requester_are_refused() {
    let desk = Desk::new();
    for line in [
        format!("#cc {SUPPORT}"),
        format!("#uncc {ANN}"),
        "#cc x@".into(),
    ] {
        let plan = desk.ingest(&desk.agent_mail(&format!("{line}\r\n\r\nHello")));
        assert_eq!(recipients(&plan), vec![AGENT], "{line}: only the refusal");
        assert!(
            plan.outgoing[0]
                .text
                .contains("Nothing of your mail was applied")
        );
    }
    assert_eq!(desk.role(SUPPORT), None);
    assert_eq!(desk.role(ANN), Some(Role::Requester));
}

#[test]
fn a_new_tickets_cc_are_added_and_shown_and_bad_ones_named() {
    let desk = Desk::new();
    let raw = format!(
        "From: zed@other.test\r\nTo: {SUPPORT}\r\nCc: Carol <{CAROL}>, x@\r\n\
         Subject: New printer\r\nMessage-ID: <new@other.test>\r\n\r\nhello\r\n"
    );
    let plan = desk.ingest(&raw);
    let carol = plan.participants.iter().find(|(m, _)| m.address == CAROL);
    assert_eq!(carol.map(|(_, r)| *r), Some(Role::Cc));
    let text = notification_text(&plan);
    assert!(text.contains(&format!("Cc: Carol <{CAROL}>\n")), "{text}");
    assert!(
        plan.message.classification.contains("x@"),
        "the dropped address is named: {}",
        plan.message.classification
    );
}
