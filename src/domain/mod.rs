//! Domain: the nouns of postdesk (ticket numbers, statuses and their
//! transitions, message kinds, participants, addresses). Pure values;
//! parsed once at the edge and trusted inside. No I/O.

mod address;
mod status;

pub use address::{Address, AddressError, MAX_ADDRESS_LEN};
pub use status::Status;

use std::fmt;

use serde::Serialize;

/// A ticket's public number: `[Ticket #1042]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TicketNumber(pub i64);

impl TicketNumber {
    /// Parses a user-given number (`1042` or `#1042`).
    pub fn parse(value: &str) -> Result<TicketNumber, String> {
        let digits = value.trim().trim_start_matches('#');
        match digits.parse::<i64>() {
            Ok(n) if n > 0 => Ok(TicketNumber(n)),
            _ => Err(format!("`{value}` is not a ticket number")),
        }
    }
}

impl fmt::Display for TicketNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
    pub fn parse(value: &str) -> Option<Direction> {
        match value {
            "in" => Some(Direction::In),
            "out" => Some(Direction::Out),
            _ => None,
        }
    }
}

/// What a message is on its ticket. Inbound: customer, agent, note,
/// auto_reply, bounce, list. Outbound: confirmation, reply, status,
/// notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Customer,
    Agent,
    Note,
    AutoReply,
    Bounce,
    List,
    Confirmation,
    Reply,
    Status,
    Notification,
}

impl MessageKind {
    pub const ALL: [MessageKind; 10] = [
        MessageKind::Customer,
        MessageKind::Agent,
        MessageKind::Note,
        MessageKind::AutoReply,
        MessageKind::Bounce,
        MessageKind::List,
        MessageKind::Confirmation,
        MessageKind::Reply,
        MessageKind::Status,
        MessageKind::Notification,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Customer => "customer",
            MessageKind::Agent => "agent",
            MessageKind::Note => "note",
            MessageKind::AutoReply => "auto_reply",
            MessageKind::Bounce => "bounce",
            MessageKind::List => "list",
            MessageKind::Confirmation => "confirmation",
            MessageKind::Reply => "reply",
            MessageKind::Status => "status",
            MessageKind::Notification => "notification",
        }
    }

    pub fn parse(value: &str) -> Option<MessageKind> {
        MessageKind::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// Whether a customer may see this message on their page. An agent's
    /// public reply is shown once, as the inbound `agent` message (the
    /// relayed `reply` copy is the same text).
    pub fn is_public(self) -> bool {
        matches!(self, MessageKind::Customer | MessageKind::Agent)
    }
}

/// How someone takes part in a ticket. A `Proposed` Cc was named by a
/// mail we could not tie to the requester: shown to the agents, but no
/// recipient of anything and no participant for threading until an agent
/// adds it (`#cc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Requester,
    Cc,
    Agent,
    Proposed,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Requester, Role::Cc, Role::Agent, Role::Proposed];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Requester => "requester",
            Role::Cc => "cc",
            Role::Agent => "agent",
            Role::Proposed => "proposed",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == value)
    }

    /// Whether this role takes part in the ticket (gets its mail, may
    /// thread by the subject tag).
    pub fn takes_part(self) -> bool {
        self != Role::Proposed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_numbers_parse_once_at_the_edge() {
        assert_eq!(TicketNumber::parse("#42"), Ok(TicketNumber(42)));
        assert_eq!(TicketNumber::parse(" 7 "), Ok(TicketNumber(7)));
        assert!(TicketNumber::parse("0").is_err());
        assert!(TicketNumber::parse("x").is_err());
    }

    #[test]
    fn message_kinds_round_trip() {
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::parse(kind.as_str()), Some(kind));
        }
        assert!(!MessageKind::Note.is_public());
        assert!(MessageKind::Customer.is_public());
    }

    #[test]
    fn roles_round_trip_and_a_proposed_cc_takes_no_part() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert!(!Role::Proposed.takes_part());
        assert!(Role::Cc.takes_part());
    }
}
