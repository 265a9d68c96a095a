//! What an inbound mail is stored as, and which kinds open a ticket when
//! they answer none (issue 12 §4: a person's mail and list mail do; bounces,
//! auto-replies and bulk mail do not). Pure.

use crate::domain::MessageKind;
use crate::ingest::classify::MailKind;

pub(super) fn inbound_kind(kind: &MailKind) -> MessageKind {
    match kind {
        MailKind::Human => MessageKind::Customer,
        MailKind::AutoReply | MailKind::OwnMail => MessageKind::AutoReply,
        MailKind::Bounce(_) => MessageKind::Bounce,
        MailKind::List | MailKind::Bulk => MessageKind::List,
    }
}

/// Whether a mail that answers no ticket opens one: a person's, or one a
/// person wrote to a list. Bulk mail (newsletters and notification
/// systems: `Precedence: bulk` with no list header) does not; when it
/// answers a ticket it is kept there as list mail.
pub(super) fn makes_a_ticket(kind: &MailKind) -> bool {
    matches!(kind, MailKind::Human | MailKind::List)
}
