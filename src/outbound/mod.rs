//! Outbound: composing the mails postdesk sends ([`compose`], pure) and
//! the outbox worker that delivers them over SMTP ([`sender`]).

pub mod compose;
pub mod journal;
pub mod notify;
pub mod sender;
