//! What became of one received mail, and each front end's answer to it.
//! Pure: the mapping from the store's report (or its error) to a verdict,
//! and from a verdict to an LMTP reply, an exit code, or IMAP's marking.

use std::fmt;

use crate::domain::TicketNumber;
use crate::store::IngestReport;
use crate::terminal;

/// The outcome of one mail at the intake seam.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored: it opened a ticket (`queued` mails went to the outbox).
    NewTicket { number: TicketNumber, queued: usize },
    /// Stored on an existing ticket.
    FollowUp { number: TicketNumber, queued: usize },
    /// Stored before (same Message-ID or content): nothing changed.
    Duplicate,
    /// Machine mail that answers no ticket: kept apart, nothing sent.
    Ignored { reason: String },
    /// Could not be processed: kept in the quarantine (committed all the same).
    Quarantined { reason: String },
    /// Larger than `limits.max_message_bytes`: not taken at all (LMTP).
    RefusedOversize { size: u64, limit: u64 },
    /// Nothing was stored (the database was busy, the disk full, …): the
    /// sender must try again later.
    TemporaryFailure { error: String },
}

impl From<IngestReport> for Verdict {
    fn from(report: IngestReport) -> Verdict {
        match report {
            IngestReport::NewTicket { number, queued } => Verdict::NewTicket { number, queued },
            IngestReport::FollowUp { number, queued } => Verdict::FollowUp { number, queued },
            IngestReport::Duplicate => Verdict::Duplicate,
            IngestReport::Ignored { reason } => Verdict::Ignored { reason },
            IngestReport::Quarantined { reason } => Verdict::Quarantined { reason },
        }
    }
}

impl Verdict {
    /// A store error, as the verdict for the mail it concerned.
    pub fn temporary(err: &anyhow::Error) -> Verdict {
        Verdict::TemporaryFailure {
            error: format!("{err:#}"),
        }
    }

    /// Whether the mail is durably kept (stored, known, ignored or
    /// quarantined): IMAP may mark it, LMTP answer 250, the pipe exit 0.
    pub fn committed(&self) -> bool {
        !matches!(
            self,
            Verdict::RefusedOversize { .. } | Verdict::TemporaryFailure { .. }
        )
    }

    /// Outgoing mails this verdict queued (the outbox worker is woken).
    pub fn queued(&self) -> usize {
        match self {
            Verdict::NewTicket { queued, .. } | Verdict::FollowUp { queued, .. } => *queued,
            _ => 0,
        }
    }

    /// The LMTP reply for one recipient of the mail (RFC 2033 §4.2).
    pub fn lmtp_reply(&self) -> String {
        match self {
            Verdict::RefusedOversize { limit, .. } => {
                format!("552 5.3.4 Message too big: this desk takes at most {limit} bytes")
            }
            Verdict::TemporaryFailure { .. } => {
                "451 4.3.0 Temporary failure storing the mail; try again later".to_string()
            }
            Verdict::NewTicket { number, .. } => format!("250 2.0.0 Ok: new ticket #{number}"),
            Verdict::FollowUp { number, .. } => format!("250 2.0.0 Ok: added to ticket #{number}"),
            Verdict::Duplicate => "250 2.0.0 Ok: already stored".to_string(),
            // The reason is for the operator (logs, `quarantine list`), not the MTA.
            Verdict::Ignored { .. } => "250 2.0.0 Ok: kept apart as machine mail".to_string(),
            Verdict::Quarantined { .. } => "250 2.0.0 Ok: kept in the quarantine".to_string(),
        }
    }

    /// The exit code of `postdesk ingest` (sysexits): 0 kept, 65 unusable
    /// input, 75 temporary failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::RefusedOversize { .. } => 65,
            Verdict::TemporaryFailure { .. } => 75,
            _ => 0,
        }
    }

    /// Logs the verdict as a sentence (a temporary failure as an error).
    pub fn log(&self, source: &str) {
        match self {
            Verdict::NewTicket { number, .. } => {
                tracing::info!("A new mail ({source}) opened ticket #{number}.");
            }
            Verdict::FollowUp { number, .. } => {
                tracing::info!("A mail ({source}) was added to ticket #{number}.");
            }
            Verdict::Duplicate => {
                tracing::info!("A mail ({source}) was already stored; nothing changed.");
            }
            Verdict::Ignored { reason } => {
                tracing::info!("A mail ({source}) was ignored: {reason}")
            }
            Verdict::Quarantined { reason } => {
                tracing::warn!("A mail ({source}) went to the quarantine: {reason}");
            }
            Verdict::RefusedOversize { size, limit } => tracing::warn!(
                "A mail ({source}) of {size} bytes was refused: the limit is {limit} bytes."
            ),
            Verdict::TemporaryFailure { error } => tracing::error!(
                "A mail ({source}) could not be stored; the sender will retry: {error}"
            ),
        }
    }
}

/// A short phrase for people: `new ticket #12`, `already stored`, ….
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::NewTicket { number, .. } => write!(f, "new ticket #{number}"),
            Verdict::FollowUp { number, .. } => write!(f, "added to ticket #{number}"),
            Verdict::Duplicate => f.write_str("already stored"),
            Verdict::Ignored { reason } => write!(f, "ignored: {}", terminal::line(reason)),
            Verdict::Quarantined { reason } => {
                write!(f, "quarantined: {}", terminal::line(reason))
            }
            Verdict::RefusedOversize { size, limit } => {
                write!(f, "refused: {size} bytes, over the limit of {limit}")
            }
            Verdict::TemporaryFailure { error } => {
                write!(f, "temporary failure: {}", terminal::line(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Verdict> {
        vec![
            Verdict::NewTicket {
                number: TicketNumber(1),
                queued: 2,
            },
            Verdict::FollowUp {
                number: TicketNumber(1),
                queued: 0,
            },
            Verdict::Duplicate,
            Verdict::Ignored { reason: "r".into() },
            Verdict::Quarantined { reason: "r".into() },
            Verdict::RefusedOversize { size: 9, limit: 8 },
            Verdict::TemporaryFailure { error: "e".into() },
        ]
    }

    #[test]
    fn every_front_end_answer_follows_from_committed() {
        for verdict in all() {
            let reply = verdict.lmtp_reply();
            assert_eq!(
                reply.starts_with("250 "),
                verdict.committed(),
                "{verdict:?}"
            );
            assert_eq!(verdict.exit_code() == 0, verdict.committed(), "{verdict:?}");
        }
    }

    #[test]
    fn refusals_and_failures_get_their_codes() {
        let big = Verdict::RefusedOversize { size: 9, limit: 8 };
        assert!(big.lmtp_reply().starts_with("552 5.3.4 "));
        assert_eq!(big.exit_code(), 65);
        let busy = Verdict::temporary(&anyhow::anyhow!("database is locked"));
        assert!(busy.lmtp_reply().starts_with("451 4.3.0 "));
        assert_eq!(busy.exit_code(), 75);
        // The error stays in the log, not in the reply to the MTA.
        assert!(!busy.lmtp_reply().contains("locked"));
    }

    #[test]
    fn a_duplicate_is_a_plain_success() {
        assert_eq!(Verdict::from(IngestReport::Duplicate), Verdict::Duplicate);
        assert_eq!(
            Verdict::Duplicate.lmtp_reply(),
            "250 2.0.0 Ok: already stored"
        );
    }
}
