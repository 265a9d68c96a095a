//! Outbound: composing the mails postdesk sends ([`compose`], pure) and
//! the outbox worker that delivers them over SMTP ([`sender`], through the
//! transport of [`mailer`]).

mod auth_watch;
pub mod compose;
pub mod html;
pub mod journal;
pub mod mailer;
pub mod mime;
pub mod notify;
pub mod routes;
pub mod sanitize;
pub mod sender;
pub mod templates;
