//! Thread: decides which ticket a mail belongs to, and why. Precedence,
//! first hit wins (rule 2 of DESIGN.md): an already-seen Message-ID → a
//! token we signed, in In-Reply-To/References or in a plus-address → any
//! Message-ID we know in In-Reply-To/References → the subject tag, when the
//! sender takes part in that ticket → a new ticket. The facts it needs come
//! through [`ThreadLookup`]; it performs no I/O of its own.

use std::fmt;

use crate::domain::TicketNumber;
use crate::ingest::parse::ParsedMail;
use crate::ingest::subject::SubjectTag;
use crate::tokens::{Purpose, Signer};

/// What threading needs to know from the store.
pub trait ThreadLookup {
    /// Whether a mail with this dedup key (Message-ID or content hash) is stored.
    fn is_seen(&self, dedup_key: &str) -> anyhow::Result<bool>;
    /// The ticket a stored Message-ID belongs to.
    fn ticket_of_message(&self, message_id: &str) -> anyhow::Result<Option<TicketNumber>>;
    /// The addresses taking part in a ticket (a proposed Cc does not), or
    /// `None` if it does not exist.
    fn participants(&self, ticket: TicketNumber) -> anyhow::Result<Option<Vec<String>>>;
}

/// Why a mail went where it went; stored with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadReason {
    SignedToken {
        found_in: String,
    },
    KnownReference {
        message_id: String,
    },
    SubjectTag {
        number: TicketNumber,
    },
    NewTicket,
    /// A tag for a ticket the sender does not take part in (or that does
    /// not exist): a new ticket, and we say why.
    NewTicketForeignTag {
        number: TicketNumber,
    },
}

impl fmt::Display for ThreadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThreadReason::SignedToken { found_in } => {
                write!(f, "it answers a mail of ours (signed token in {found_in})")
            }
            ThreadReason::KnownReference { message_id } => {
                write!(f, "it references a known message <{message_id}>")
            }
            ThreadReason::SubjectTag { number } => write!(
                f,
                "its subject carries the tag of ticket #{number} and the sender takes part in it"
            ),
            ThreadReason::NewTicket => {
                write!(
                    f,
                    "it carries no tag, token or known reference: a new ticket"
                )
            }
            ThreadReason::NewTicketForeignTag { number } => write!(
                f,
                "its subject names ticket #{number} but the sender does not take part in it: a new ticket"
            ),
        }
    }
}

/// The threading decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Threading {
    /// The same mail was stored before; nothing changes.
    Duplicate,
    Existing {
        ticket: TicketNumber,
        reason: ThreadReason,
    },
    New {
        reason: ThreadReason,
    },
}

/// Decides where `mail` goes. `tag` is our subject tag (`[Ticket #N]`);
/// `agents` take part in every ticket.
pub fn thread(
    mail: &ParsedMail,
    signer: &Signer,
    tag: &SubjectTag,
    agents: &[String],
    lookup: &impl ThreadLookup,
) -> anyhow::Result<Threading> {
    if lookup.is_seen(&mail.dedup_key())? {
        return Ok(Threading::Duplicate);
    }
    let references = mail.referenced_ids();
    if let Some((ticket, found_in)) = signed_token(mail, &references, signer)
        && lookup.participants(ticket)?.is_some()
    {
        let reason = ThreadReason::SignedToken { found_in };
        return Ok(Threading::Existing { ticket, reason });
    }
    for id in &references {
        if let Some(ticket) = lookup.ticket_of_message(id)? {
            let reason = ThreadReason::KnownReference {
                message_id: id.clone(),
            };
            return Ok(Threading::Existing { ticket, reason });
        }
    }
    if let Some(number) = tag.find(&mail.subject).map(|n| TicketNumber(n as i64)) {
        let sender = mail.from.as_ref().map(|m| m.address.as_str()).unwrap_or("");
        let takes_part = lookup.participants(number)?.is_some_and(|people| {
            people
                .iter()
                .chain(agents)
                .any(|p| p.eq_ignore_ascii_case(sender))
        });
        if takes_part {
            let reason = ThreadReason::SubjectTag { number };
            return Ok(Threading::Existing {
                ticket: number,
                reason,
            });
        }
        let reason = ThreadReason::NewTicketForeignTag { number };
        return Ok(Threading::New { reason });
    }
    Ok(Threading::New {
        reason: ThreadReason::NewTicket,
    })
}

/// A token of ours in the references or a recipient's plus-address.
/// Tokens signed for an agent are checked by the agent rules, not here.
fn signed_token(
    mail: &ParsedMail,
    references: &[String],
    signer: &Signer,
) -> Option<(TicketNumber, String)> {
    let from_refs = references.iter().find_map(|id| {
        signer
            .verify(id, None)
            .map(|r| (r.ticket, "References".to_string()))
    });
    from_refs.or_else(|| {
        mail.to
            .iter()
            .chain(mail.cc.iter())
            .filter(|m| m.address.contains('+'))
            .find_map(|m| {
                signer
                    .verify(&m.address, None)
                    .map(|r| (r.ticket, format!("the address {}", m.address)))
            })
    })
}

/// The tickets named by tokens of ours that went to customers (a
/// confirmation, a reply, a status mail, our reply-to plus-address) and
/// that this mail answers. Tokens signed for an agent, or for the agents'
/// list, do not count: a customer never received them.
pub fn customer_tokens(mail: &ParsedMail, signer: &Signer) -> Vec<TicketNumber> {
    let plus = mail
        .to
        .iter()
        .chain(mail.cc.iter())
        .filter(|m| m.address.contains('+'))
        .map(|m| m.address.to_string());
    let mut out: Vec<TicketNumber> = mail
        .referenced_ids()
        .into_iter()
        .chain(plus)
        .filter_map(|text| signer.verify(&text, None))
        .filter(|r| r.purpose != Purpose::Notification)
        .map(|r| r.ticket)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::parse;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct MemLookup {
        seen: Vec<String>,
        messages: BTreeMap<String, TicketNumber>,
        participants: BTreeMap<TicketNumber, Vec<String>>,
    }

    impl ThreadLookup for MemLookup {
        fn is_seen(&self, key: &str) -> anyhow::Result<bool> {
            Ok(self.seen.iter().any(|s| s == key))
        }
        fn ticket_of_message(&self, id: &str) -> anyhow::Result<Option<TicketNumber>> {
            Ok(self.messages.get(id).copied())
        }
        fn participants(&self, t: TicketNumber) -> anyhow::Result<Option<Vec<String>>> {
            Ok(self.participants.get(&t).cloned())
        }
    }

    fn mail(headers: &str) -> ParsedMail {
        parse(format!("{headers}\r\n\r\nbody\r\n").as_bytes()).unwrap()
    }

    fn lookup() -> MemLookup {
        let mut l = MemLookup::default();
        l.messages
            .insert("orig@customer.test".into(), TicketNumber(5));
        l.participants
            .insert(TicketNumber(5), vec!["ann@customer.test".into()]);
        l.participants
            .insert(TicketNumber(9), vec!["zed@other.test".into()]);
        l
    }

    /// `thread` with the usual test signer, tag, no agents and `lookup()`.
    fn threaded(m: &ParsedMail) -> Threading {
        thread(
            m,
            &Signer::new("k"),
            &SubjectTag::new("Ticket"),
            &[],
            &lookup(),
        )
        .unwrap()
    }

    #[test]
    fn a_seen_message_is_a_duplicate() {
        let mut l = lookup();
        l.seen.push("x@customer.test".into());
        let m = mail("From: ann@customer.test\r\nMessage-ID: <x@customer.test>\r\nSubject: hi");
        assert_eq!(
            thread(&m, &Signer::new("k"), &SubjectTag::new("Ticket"), &[], &l).unwrap(),
            Threading::Duplicate
        );
    }

    #[test]
    fn a_signed_token_wins_over_the_subject() {
        let signer = Signer::new("k");
        let ours = signer
            .message_id(TicketNumber(9), Purpose::Confirmation, None, "support.test")
            .unwrap();
        let m = mail(&format!(
            "From: zed@other.test\r\nMessage-ID: <y@other.test>\r\nIn-Reply-To: <{ours}>\r\nSubject: Re: [Ticket #5] hi"
        ));
        let t = thread(&m, &signer, &SubjectTag::new("Ticket"), &[], &lookup()).unwrap();
        assert!(
            matches!(
                t,
                Threading::Existing {
                    ticket: TicketNumber(9),
                    reason: ThreadReason::SignedToken { .. }
                }
            ),
            "{t:?}"
        );
    }

    #[test]
    fn a_known_reference_threads_even_with_a_new_subject() {
        let m = mail(
            "From: ann@customer.test\r\nMessage-ID: <y@customer.test>\r\nReferences: <orig@customer.test>\r\nSubject: something else",
        );
        let t = threaded(&m);
        assert_eq!(
            t,
            Threading::Existing {
                ticket: TicketNumber(5),
                reason: ThreadReason::KnownReference {
                    message_id: "orig@customer.test".into()
                }
            }
        );
    }

    #[test]
    fn the_tag_counts_only_for_participants() {
        let m = mail(
            "From: Ann@customer.test\r\nMessage-ID: <z@customer.test>\r\nSubject: AW: [Ticket #5] hi",
        );
        let t = threaded(&m);
        assert!(matches!(
            t,
            Threading::Existing {
                ticket: TicketNumber(5),
                ..
            }
        ));
        let m =
            mail("From: mallory@evil.test\r\nMessage-ID: <w@evil.test>\r\nSubject: [Ticket #5] hi");
        let t = threaded(&m);
        assert_eq!(
            t,
            Threading::New {
                reason: ThreadReason::NewTicketForeignTag {
                    number: TicketNumber(5)
                }
            }
        );
    }

    #[test]
    fn customer_tokens_name_only_tickets_a_customer_was_sent() {
        let signer = Signer::new("k");
        let id = |t, purpose, agent| {
            signer
                .message_id(TicketNumber(t), purpose, agent, "support.test")
                .unwrap()
        };
        let confirmation = id(5, Purpose::Confirmation, None);
        let reply = id(6, Purpose::Reply, None);
        let to_agent = id(7, Purpose::Notification, Some("alice@support.test"));
        let to_list = id(8, Purpose::Notification, None);
        let plus = format!(
            "tickets+{}@support.test",
            signer
                .token(TicketNumber(9), Purpose::ReplyAddress, None)
                .unwrap()
        );
        let m = mail(&format!(
            "From: ann@customer.test\r\nTo: {plus}\r\nIn-Reply-To: <{confirmation}>\r\n\
             References: <{reply}> <{to_agent}> <{to_list}> <forged.5.x@support.test>\r\nSubject: x"
        ));
        assert_eq!(
            customer_tokens(&m, &signer),
            vec![TicketNumber(5), TicketNumber(6), TicketNumber(9)]
        );
        let quoting =
            mail("From: ann@customer.test\r\nReferences: <orig@customer.test>\r\nSubject: x");
        assert!(customer_tokens(&quoting, &signer).is_empty());
    }

    #[test]
    fn a_plain_mail_opens_a_new_ticket() {
        let m = mail("From: new@customer.test\r\nMessage-ID: <n@customer.test>\r\nSubject: help");
        let t = threaded(&m);
        assert_eq!(
            t,
            Threading::New {
                reason: ThreadReason::NewTicket
            }
        );
    }
}
