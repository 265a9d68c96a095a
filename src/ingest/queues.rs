//! Queues as ingest sees them: each support address's identity (From
//! address and name), its agents and the IMAP login it is read from, and
//! the decision which queue a new ticket goes to. Pure: the facts come from
//! the settings once, the mail and where it was delivered as arguments.
//!
//! The queue of a new ticket: the first queue address among the mail's
//! To, then Cc, then Delivered-To headers (so two copies of one mail, one
//! per mailbox, land in the same queue whichever is read first); else the
//! queue of the source (the LMTP recipient, the IMAP account); else the
//! first queue. A follow-up stays in its ticket's queue (the caller's part).

use crate::ingest::Pipeline;
use crate::ingest::parse::ParsedMail;
use crate::ingest::subject::SubjectTag;
use crate::outbound::compose::Identity;
use crate::settings::Queue;

/// One queue's part in ingest.
#[derive(Debug, Clone)]
pub struct QueueView {
    pub name: String,
    /// Lower-case; From of every mail of this queue's tickets.
    pub identity: Identity,
    /// Lower-case agents' addresses.
    pub agents: Vec<String>,
    /// The domain of the queue's address: our Message-IDs' domain.
    pub domain: String,
    /// The IMAP login the queue is read from (lower-case; empty if none).
    pub imap_account: String,
}

impl QueueView {
    /// Whether `address` (lower-case) is this queue's address or a
    /// plus-address of it.
    pub fn owns_address(&self, address: &str) -> bool {
        let Some((local, domain)) = address.trim().rsplit_once('@') else {
            return false;
        };
        let local = local.split_once('+').map_or(local, |(base, _)| base);
        self.identity
            .address
            .rsplit_once('@')
            .is_some_and(|(own_local, own_domain)| {
                local.eq_ignore_ascii_case(own_local) && domain.eq_ignore_ascii_case(own_domain)
            })
    }
}

/// Each configured queue's view, the first one first; `domain` is the
/// fallback for an address without one (validation refuses those).
pub fn views(configured: &[Queue], tag: &str, loop_value: &str, domain: &str) -> Vec<QueueView> {
    configured
        .iter()
        .map(|q| QueueView {
            name: q.name.clone(),
            identity: Identity {
                address: q.address.to_ascii_lowercase(),
                name: q.display_name.clone(),
                tag: SubjectTag::new(tag),
                loop_value: loop_value.to_string(),
                // The pipeline gives each queue its own (`Pipeline::new`).
                wording: Default::default(),
            },
            agents: q.agents.iter().map(|a| a.to_ascii_lowercase()).collect(),
            domain: q.address.rsplit('@').next().unwrap_or(domain).to_string(),
            imap_account: q.imap.username.to_ascii_lowercase(),
        })
        .collect()
}

impl Pipeline {
    /// The view of queue `name`: its identity, agents and domain. A name
    /// no longer configured (a queue renamed or removed) is handled by the
    /// first queue.
    pub fn in_queue(&self, name: &str) -> Pipeline {
        let view = self
            .queues
            .iter()
            .find(|q| q.name == name)
            .or_else(|| self.queues.first());
        let Some(view) = view else {
            return self.clone();
        };
        Pipeline {
            queue: view.name.clone(),
            identity: view.identity.clone(),
            agents: view.agents.clone(),
            domain: view.domain.clone(),
            ..self.clone()
        }
    }
}

/// The queue whose address `address` is, among `queues`.
pub fn of_address<'a>(queues: &'a [QueueView], address: &str) -> Option<&'a QueueView> {
    queues.iter().find(|q| q.owns_address(address))
}

/// The queue a mail delivered to `delivered_to` (an LMTP recipient or an
/// IMAP login) goes to by its source alone.
pub fn of_source<'a>(queues: &'a [QueueView], delivered_to: &str) -> Option<&'a QueueView> {
    of_address(queues, delivered_to).or_else(|| {
        queues.iter().find(|q| {
            !q.imap_account.is_empty() && q.imap_account.eq_ignore_ascii_case(delivered_to)
        })
    })
}

/// The queue of a new ticket opened by `mail` (see the module's note).
/// `queues` is never empty: the first queue always exists.
pub fn for_new_ticket<'a>(
    queues: &'a [QueueView],
    mail: &ParsedMail,
    delivered_to: Option<&str>,
) -> Option<&'a QueueView> {
    let headers = mail
        .to
        .iter()
        .chain(&mail.cc)
        .map(|m| m.address.as_str())
        .find_map(|a| of_address(queues, a));
    let delivered = || {
        mail.header_all("delivered-to")
            .find_map(|a| of_address(queues, a.trim().trim_matches(['<', '>'])))
    };
    headers
        .or_else(delivered)
        .or_else(|| delivered_to.and_then(|d| of_source(queues, d)))
        .or_else(|| queues.first())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse::Mailbox;

    fn view(name: &str, address: &str, account: &str) -> QueueView {
        QueueView {
            name: name.into(),
            identity: Identity {
                address: address.into(),
                name: name.into(),
                tag: SubjectTag::new("Ticket"),
                loop_value: String::new(),
                wording: Default::default(),
            },
            agents: Vec::new(),
            domain: "shop.test".into(),
            imap_account: account.into(),
        }
    }

    fn queues() -> Vec<QueueView> {
        vec![
            view("support", "help@shop.test", "help@shop.test"),
            view("billing", "billing@shop.test", "svc-billing"),
        ]
    }

    fn mail(to: &[&str], cc: &[&str], delivered: &[&str]) -> ParsedMail {
        let boxes = |list: &[&str]| {
            list.iter()
                .map(|a| Mailbox::parse(a, None).unwrap())
                .collect()
        };
        ParsedMail {
            to: boxes(to),
            cc: boxes(cc),
            headers: delivered
                .iter()
                .map(|d| ("delivered-to".to_string(), d.to_string()))
                .collect(),
            ..ParsedMail::default()
        }
    }

    fn decided(m: &ParsedMail, source: Option<&str>) -> String {
        for_new_ticket(&queues(), m, source).unwrap().name.clone()
    }

    #[test]
    fn the_headers_decide_first_to_then_cc_then_delivered_to() {
        let q = &queues();
        let both = mail(&["billing@shop.test", "help@shop.test"], &[], &[]);
        assert_eq!(decided(&both, Some("help@shop.test")), "billing");
        let cc = mail(&["someone@else.test"], &["Billing+x@Shop.test"], &[]);
        assert_eq!(decided(&cc, Some("help@shop.test")), "billing");
        let bcc = mail(&["list@else.test"], &[], &["billing@shop.test"]);
        assert_eq!(decided(&bcc, None), "billing");
        assert!(of_address(q, "billingx@shop.test").is_none());
    }

    #[test]
    fn without_a_queue_in_the_headers_the_source_then_the_first_queue_decides() {
        let alias = mail(&["accounts@shop.test"], &[], &[]);
        assert_eq!(decided(&alias, Some("svc-billing")), "billing");
        assert_eq!(decided(&alias, Some("billing@shop.test")), "billing");
        assert_eq!(decided(&alias, Some("stranger@else.test")), "support");
        assert_eq!(decided(&alias, None), "support");
    }
}
