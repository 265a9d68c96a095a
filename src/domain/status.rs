//! Status: a ticket's lifecycle `new → open → pending → resolved → closed`
//! and what moves it. Pure.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    New,
    Open,
    Pending,
    Resolved,
    Closed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::New,
        Status::Open,
        Status::Pending,
        Status::Resolved,
        Status::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Open => "open",
            Status::Pending => "pending",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    pub fn parse(value: &str) -> Result<Status, String> {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(value.trim()))
            .ok_or_else(|| {
                format!("`{value}` is not a status (new, open, pending, resolved, closed)")
            })
    }

    /// One line in plain words, for customers.
    pub fn explanation(self) -> &'static str {
        match self {
            Status::New => "We have received your request and will look at it soon.",
            Status::Open => "We are working on your request.",
            Status::Pending => "We are waiting for more information from you.",
            Status::Resolved => "We believe this is solved. Reply if it is not.",
            Status::Closed => "This request is closed. Reply to open it again.",
        }
    }

    /// The status after a customer writes again. A closed ticket stays
    /// closed here: whether it reopens depends on the reopen window, which
    /// the caller decides.
    pub fn after_customer_reply(self) -> Status {
        match self {
            Status::New => Status::New,
            Status::Open | Status::Pending | Status::Resolved => Status::Open,
            Status::Closed => Status::Closed,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_reject_nonsense() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Ok(s));
        }
        assert_eq!(Status::parse("RESOLVED"), Ok(Status::Resolved));
        assert!(Status::parse("done").is_err());
    }

    #[test]
    fn a_customer_reply_reopens_waiting_tickets() {
        assert_eq!(Status::Pending.after_customer_reply(), Status::Open);
        assert_eq!(Status::Resolved.after_customer_reply(), Status::Open);
        assert_eq!(Status::New.after_customer_reply(), Status::New);
        assert_eq!(Status::Closed.after_customer_reply(), Status::Closed);
    }
}
