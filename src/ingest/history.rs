//! History: what a mail brought in by `postdesk import` changes, beside what
//! the same mail would change arriving live. Old mail is threaded and stored
//! like any, but as of its own Date (so reopen windows and the ticket's dates
//! are those of the conversation), and it sends nothing: no confirmation, no
//! notification, no relayed reply, no notice, no link handed out, and no
//! status change (the store closes the tickets it makes: the conversation is
//! over unless someone writes again). Pure: the outcome and the clock in,
//! the outcome and the time to write at out.

use chrono::{DateTime, Utc};

use super::Outcome;
use super::prepared::Prepared;
use crate::ingest::apply::TicketChange;

/// The time an imported mail is handled at: its own Date, never later than
/// `now` (a Date in the future is a wrong clock, not a plan).
pub fn history_time(prepared: &Prepared, now: DateTime<Utc>) -> DateTime<Utc> {
    match prepared {
        Prepared::Mail(prepared) => prepared.mail.date.map_or(now, |date| date.min(now)),
        Prepared::Refused { .. } => now,
    }
}

/// The outcome with everything outgoing taken out and no status change.
pub fn as_history(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Stored(mut plan) => {
            plan.outgoing.clear();
            plan.links.clear();
            if let TicketChange::Update { status, .. } = &mut plan.ticket {
                *status = None;
            }
            Outcome::Stored(plan)
        }
        Outcome::Quarantine {
            reason, dedup_key, ..
        } => Outcome::Quarantine {
            reason,
            dedup_key,
            notice: None,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Pipeline;
    use crate::settings::Settings;

    fn pipeline() -> Pipeline {
        let settings = Settings::load_with_env(None, Vec::new()).expect("defaults");
        Pipeline::new(&settings, "a-secret-of-enough-length")
    }

    #[test]
    fn an_old_mail_is_handled_at_its_own_date_and_a_future_one_now() {
        let raw = b"From: ann@customer.test\r\nTo: tickets@example.com\r\n\
            Date: Tue, 3 Mar 2020 10:00:00 +0000\r\nSubject: Old\r\n\r\nHi\r\n";
        let prepared = pipeline().prepare(raw);
        let now = Utc::now();
        assert_eq!(
            history_time(&prepared, now).to_rfc3339(),
            "2020-03-03T10:00:00+00:00"
        );
        let future =
            b"From: ann@customer.test\r\nDate: Tue, 3 Mar 2099 10:00:00 +0000\r\n\r\nHi\r\n";
        assert_eq!(history_time(&pipeline().prepare(future), now), now);
    }
}
