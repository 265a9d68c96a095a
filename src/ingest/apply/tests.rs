//! The age rule through the whole pure pipeline: an old mail still makes a
//! ticket and tells the agents, but its sender gets no confirmation, and
//! the stored classification says why.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::domain::TicketNumber;
use crate::ingest::apply::{IngestLookup, Plan, TicketInfo};
use crate::ingest::thread::ThreadLookup;
use crate::ingest::{Outcome, Pipeline};
use crate::outbound::compose::OutgoingMail;
use crate::settings::Settings;

const SUPPORT: &str = "tickets@support.test";
const AGENT: &str = "alice@support.test";
const ANN: &str = "ann@customer.test";

/// An empty desk: every mail is new, nothing was sent to anyone.
struct Empty;

impl ThreadLookup for Empty {
    fn is_seen(&self, _key: &str) -> anyhow::Result<bool> {
        Ok(false)
    }
    fn ticket_of_message(&self, _id: &str) -> anyhow::Result<Option<TicketNumber>> {
        Ok(None)
    }
    fn participants(&self, _t: TicketNumber) -> anyhow::Result<Option<Vec<String>>> {
        Ok(None)
    }
}

impl IngestLookup for Empty {
    fn next_ticket_number(&self) -> anyhow::Result<TicketNumber> {
        Ok(TicketNumber(7))
    }
    fn ticket_info(&self, _t: TicketNumber) -> anyhow::Result<Option<TicketInfo>> {
        Ok(None)
    }
    fn automatic_mails_since(&self, _a: &str, _since: DateTime<Utc>) -> anyhow::Result<u32> {
        Ok(0)
    }
}

fn pipeline(max_age_hours: &str) -> Pipeline {
    let env = [
        ("SUPPORT__ADDRESS", SUPPORT),
        ("SUPPORT__AGENTS", AGENT),
        ("LIMITS__CONFIRM_MAX_AGE_HOURS", max_age_hours),
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

fn ingest(pipeline: &Pipeline, written: DateTime<Utc>) -> Box<Plan> {
    let raw = format!(
        "From: Ann <{ANN}>\r\nTo: {SUPPORT}\r\nSubject: Printer\r\n\
         Message-ID: <old@customer.test>\r\nDate: {}\r\n\r\nThe printer is broken.\r\n",
        written.to_rfc2822()
    );
    match pipeline.process(raw.as_bytes(), &Empty, now()).unwrap() {
        Outcome::Stored(plan) => plan,
        other => panic!("stored expected: {other:?}"),
    }
}

fn to(out: &[OutgoingMail]) -> Vec<String> {
    let mut to: Vec<String> = out.iter().flat_map(|m| m.recipients.clone()).collect();
    to.sort();
    to
}

#[test]
fn an_old_mail_makes_a_ticket_and_tells_the_agents_but_not_its_sender() {
    let plan = ingest(&pipeline("48"), now() - Duration::days(3));
    assert_eq!(plan.ticket.number(), TicketNumber(7));
    assert_eq!(to(&plan.outgoing), vec![AGENT.to_string()]);
    assert!(
        plan.message
            .classification
            .ends_with("; no confirmation: the mail is 3 days old"),
        "{}",
        plan.message.classification
    );
}

#[test]
fn a_fresh_mail_is_confirmed_and_the_limit_is_the_setting() {
    let plan = ingest(&pipeline("48"), now() - Duration::hours(47));
    assert_eq!(to(&plan.outgoing), vec![AGENT.to_string(), ANN.to_string()]);
    assert!(!plan.message.classification.contains("no confirmation"));
    // The same mail under a one-hour limit is too old.
    let plan = ingest(&pipeline("1"), now() - Duration::hours(47));
    assert_eq!(to(&plan.outgoing), vec![AGENT.to_string()]);
    assert!(plan.message.classification.contains("47 hours old"));
}
