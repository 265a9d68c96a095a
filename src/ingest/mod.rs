//! Ingest: raw bytes → an [`Outcome`]: what a mail is, which ticket it
//! belongs to and why, what the store writes and what goes out. First
//! [`Pipeline::prepare`] (parse, classify, authenticate an agent, strip:
//! the bytes alone), then [`Pipeline::decide`] (thread → apply → compose,
//! against the store's facts read through [`apply::IngestLookup`]). Every
//! step is a pure function of its input, those facts and `now`; the write
//! itself happens at the edge (`store::Store::ingest_batch`), in one
//! transaction.

pub mod agent;
pub mod apply;
pub mod authresults;
pub mod classify;
pub mod history;
pub mod parse;
mod prepared;
pub mod queues;
mod relay;
mod respond;
pub mod span;
pub mod strip;
pub mod subject;
pub mod thread;
mod unproven;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::TicketNumber;
use crate::outbound::compose::{self, Identity, OutgoingMail, ThreadHeaders};
use crate::outbound::templates::{Templates, Wording};
use crate::settings::Settings;
use crate::tokens::{Purpose, Signer, link_token, sha256_hex};
use apply::{AccessLink, IngestLookup, Plan, Policy};
use classify::{MailKind, OwnIdentity};
use parse::ParsedMail;
use prepared::contained;
pub use prepared::{EarlyPanic, Prepared, PreparedMail, Refusal, panic_message};
use queues::QueueView;

/// What ingesting one mail comes to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Seen before: nothing changes.
    Duplicate,
    /// Stored on a ticket.
    Stored(Box<Plan>),
    /// Kept in the quarantine with its reason; `notice` is the polite note
    /// to the sender, where one may be sent.
    Quarantine {
        reason: String,
        dedup_key: String,
        notice: Option<Box<OutgoingMail>>,
    },
    /// Machine mail (an auto-reply, a bounce, bulk mail) that answers no
    /// ticket: kept apart from the quarantine with its reason, nothing
    /// sent. Not a fault (issue 12 §4).
    Ignored { reason: String, dedup_key: String },
}

/// The settings-derived context of ingest: who we are and our limits.
/// `identity`, `agents` and `domain` are those of one queue (`queue`; the
/// first one as built): [`Pipeline::in_queue`] gives another queue's view.
/// As built, `agents` holds every queue's agents (authentication and
/// threading know them all; what an agent may do is the queue's).
#[derive(Clone)]
pub struct Pipeline {
    /// The queue this view writes for.
    pub queue: String,
    /// Every queue, the first one first.
    pub queues: Arc<[QueueView]>,
    pub identity: Identity,
    pub own: OwnIdentity,
    pub signer: Signer,
    pub domain: String,
    pub public_url: String,
    pub agents: Vec<String>,
    pub agent_list: Option<String>,
    pub trusted_authserv_id: String,
    /// The trusted server writes its results below its own `Received`.
    pub trusted_results_below_received: bool,
    /// How long an agent's notification token authenticates (days).
    pub agent_token_days: f64,
    pub plus_addressing: bool,
    pub max_message_bytes: u64,
    /// A mail whose processing takes longer is quarantined
    /// (`limits.max_mail_seconds`).
    pub max_mail_time: std::time::Duration,
    pub policy: Policy,
    /// Every queue's wording, loaded once; each queue's `identity` holds
    /// its part (`Wording`).
    pub templates: Arc<Templates>,
}

impl Pipeline {
    /// `secret` is the HMAC key (configured or kept in the database). The
    /// mails are worded by the built-in templates in each queue's
    /// language; the daemon's pipeline, with `[templates] dir`, is
    /// [`Pipeline::with_templates`].
    pub fn new(settings: &Settings, secret: &str) -> Pipeline {
        let templates = Arc::new(Templates::builtin(settings));
        Pipeline::with_templates(settings, secret, templates)
    }

    /// [`Pipeline::new`] with `templates` (`Templates::load`).
    pub fn with_templates(
        settings: &Settings,
        secret: &str,
        templates: Arc<Templates>,
    ) -> Pipeline {
        let domain = settings.support_domain().to_string();
        let loop_value = sha256_hex(secret.as_bytes())
            .get(..16)
            .unwrap_or_default()
            .to_string();
        let support = &settings.support;
        let configured = settings.queues();
        let mut views = queues::views(&configured, &support.tag, &loop_value, &domain);
        for view in &mut views {
            view.identity.wording = Wording::new(templates.clone(), &view.name);
        }
        let mut every_agent: Vec<String> = views.iter().flat_map(|v| v.agents.clone()).collect();
        every_agent.sort();
        every_agent.dedup();
        let mut lists: Vec<String> = configured.iter().flat_map(|q| q.lists.clone()).collect();
        lists.sort();
        lists.dedup();
        Pipeline {
            queue: support.queue.clone(),
            identity: views[0].identity.clone(),
            queues: Arc::from(views.clone()),
            own: OwnIdentity {
                addresses: views.iter().map(|v| v.identity.address.clone()).collect(),
                message_id_domain: domain.clone(),
                loop_header_value: loop_value,
                lists,
            },
            signer: Signer::new(secret),
            domain,
            public_url: support.public_url.trim_end_matches('/').to_string(),
            agents: every_agent,
            agent_list: Some(support.agent_list.to_ascii_lowercase()).filter(|a| !a.is_empty()),
            trusted_authserv_id: support.trusted_authserv_id.clone(),
            trusted_results_below_received: support.trusted_results_below_received,
            agent_token_days: support.agent_token_days,
            plus_addressing: support.plus_addressing,
            max_message_bytes: settings.limits.max_message_bytes,
            max_mail_time: std::time::Duration::from_secs(settings.limits.max_mail_seconds),
            policy: Policy {
                auto_replies_per_hour: settings.limits.auto_replies_per_hour,
                reopen_days: support.reopen_days,
                confirm_max_age_hours: settings.limits.confirm_max_age_hours,
            },
            templates,
        }
    }

    /// A fresh private link to one ticket, recorded in `links`.
    pub fn ticket_link(
        &self,
        ticket: TicketNumber,
        links: &mut Vec<AccessLink>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let token = link_token(now)?;
        let url = format!("{}/t/{token}", self.public_url);
        links.push(AccessLink::Ticket { token, ticket });
        Ok(url)
    }

    /// A fresh private link to all tickets of one requester.
    pub fn requester_link(
        &self,
        address: &str,
        links: &mut Vec<AccessLink>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let token = link_token(now)?;
        let url = format!("{}/r/{token}", self.public_url);
        links.push(AccessLink::Requester {
            token,
            address: address.to_string(),
        });
        Ok(url)
    }

    /// A signed Message-ID of ours.
    pub fn message_id(
        &self,
        ticket: TicketNumber,
        purpose: Purpose,
        agent: Option<&str>,
    ) -> anyhow::Result<String> {
        self.signer.message_id(ticket, purpose, agent, &self.domain)
    }

    /// Where replies to our mail about `ticket` should go: the support
    /// address, with a signed plus-token where plus-addressing is on.
    pub fn reply_address(
        &self,
        ticket: TicketNumber,
        agent: Option<&str>,
    ) -> anyhow::Result<String> {
        if !self.plus_addressing {
            return Ok(self.identity.address.clone());
        }
        let token = self.signer.token(ticket, Purpose::ReplyAddress, agent)?;
        let (local, domain) = self
            .identity
            .address
            .split_once('@')
            .unwrap_or((self.identity.address.as_str(), self.domain.as_str()));
        Ok(format!("{local}+{token}@{domain}"))
    }

    /// The status email for `info` moving to `status` (CLI, autoclose),
    /// with the links it hands out.
    pub fn status_mail(
        &self,
        info: &apply::TicketInfo,
        status: crate::domain::Status,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(OutgoingMail, Vec<AccessLink>)> {
        let mut links = Vec::new();
        let to = std::iter::once(info.requester.clone())
            .chain(info.cc.iter().cloned())
            .collect();
        let thread = relay::customer_thread(info);
        let p = self.in_queue(&info.queue);
        let mail = relay::status_mail(&p, info, status, to, thread, &mut links, now)?;
        Ok((mail, links))
    }

    /// Runs the pure pipeline over one raw mail.
    #[tracing::instrument(skip_all, fields(bytes = raw.len()))]
    pub fn process(
        &self,
        raw: &[u8],
        lookup: &impl IngestLookup,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Outcome> {
        self.decide(raw, self.prepare(raw), lookup, now)
    }

    /// The part of [`Pipeline::process`] that needs only the bytes (parse,
    /// classify, authenticate an agent, split the reply from its quotes):
    /// the store runs it for the next mails of a batch on another thread
    /// while the writer applies the current one.
    pub fn prepare(&self, raw: &[u8]) -> Prepared {
        if raw.len() as u64 > self.max_message_bytes {
            return Prepared::Refused {
                sha256: sha256_hex(raw),
                why: Refusal::Oversize {
                    size: raw.len() as u64,
                    server_copy: None,
                },
            };
        }
        let mail = match parse::parse(raw) {
            Ok(mail) => mail,
            Err(err) => {
                return Prepared::Refused {
                    sha256: sha256_hex(raw),
                    why: Refusal::Unreadable(format!("the mail cannot be read: {err}")),
                };
            }
        };
        let class = classify::classify(&mail, &self.own);
        // Run ahead of the checks that come first in `decide`: a panic here
        // is kept and raised again where the step used to run, so that a
        // duplicate stays a duplicate whatever its body does.
        let agent = contained(|| {
            (class.kind == MailKind::Human)
                .then(|| {
                    agent::authenticate(
                        &mail,
                        &self.signer,
                        &self.agents,
                        self.agent_list.as_deref(),
                        authresults::TrustedServer {
                            id: &self.trusted_authserv_id,
                            below_own_received: self.trusted_results_below_received,
                        },
                    )
                })
                .flatten()
        });
        let stripped = contained(|| strip::strip_reply(&mail.text));
        Prepared::Mail(Box::new(PreparedMail {
            mail,
            class,
            agent,
            stripped,
        }))
    }

    /// A mail of which only the header section was fetched because the
    /// server declared it `full_size` bytes, over the limit: it is refused
    /// unread (the sender is told as for any oversize mail). `server_copy`
    /// says where the whole mail stays (e.g. `mailbox INBOX, UID 42`).
    /// Deduplicated by the hash of the header bytes.
    pub fn prepare_truncated(&self, header: &[u8], full_size: u64, server_copy: &str) -> Prepared {
        Prepared::Refused {
            sha256: sha256_hex(header),
            why: Refusal::Oversize {
                size: full_size,
                server_copy: Some(server_copy.to_string()),
            },
        }
    }

    /// The rest of [`Pipeline::process`]: threading and deciding against
    /// the store's facts, and composing what goes out.
    pub fn decide(
        &self,
        raw: &[u8],
        prepared: Prepared,
        lookup: &impl IngestLookup,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Outcome> {
        self.decide_from(raw, prepared, None, lookup, now)
    }

    /// [`Pipeline::decide`] for a mail whose source says where it was
    /// delivered (an LMTP recipient, an IMAP login): the queue of a new
    /// ticket falls back to that source's (`queues::for_new_ticket`).
    pub fn decide_from(
        &self,
        raw: &[u8],
        prepared: Prepared,
        delivered_to: Option<&str>,
        lookup: &impl IngestLookup,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Outcome> {
        let prepared = match prepared {
            Prepared::Mail(prepared) => prepared,
            Prepared::Refused { sha256, why } => {
                let key = parse::content_key(&sha256);
                if lookup.is_seen(&key)? {
                    return Ok(Outcome::Duplicate);
                }
                let (reason, notice) = match why {
                    Refusal::Oversize { size, server_copy } => {
                        self.oversize(raw, size, server_copy.as_deref(), lookup, now)?
                    }
                    Refusal::Unreadable(reason) => (reason, None),
                };
                return Ok(Outcome::Quarantine {
                    reason,
                    dedup_key: key,
                    notice,
                });
            }
        };
        let threading = thread::thread(
            &prepared.mail,
            &self.signer,
            &self.identity.tag,
            &self.agents,
            lookup,
        )?;
        if threading == thread::Threading::Duplicate {
            return Ok(Outcome::Duplicate);
        }
        // A follow-up stays in its ticket's queue; a new ticket's queue
        // goes by the mail and its source.
        let queue = match &threading {
            thread::Threading::Existing { ticket, .. } => lookup.ticket_queue(*ticket)?,
            _ => None,
        };
        let queue = queue.unwrap_or_else(|| {
            queues::for_new_ticket(&self.queues, &prepared.mail, delivered_to)
                .map_or_else(|| self.queue.clone(), |q| q.name.clone())
        });
        let view = self.in_queue(&queue);
        // An agent's token older than `agent_token_days` no longer
        // authenticates. Mail from an agent's address that is not proven
        // the agent's is kept as a note, and the agent is told (`unproven`).
        let days = self.agent_token_days;
        let auth = prepared.agent().cloned().map(|auth| auth.at(now, days));
        if let Some(auth) = auth.clone().filter(|auth| auth.is_fresh(now, days)) {
            return relay::agent_mail(self, &prepared, auth, lookup, now);
        }
        // The sender as classify sees it: behind our own group alias, the
        // person it names, who must not pass for a customer when that is
        // an agent's address either.
        let sender = prepared
            .class
            .person
            .as_ref()
            .or(prepared.mail.from.as_ref());
        let from_agent =
            sender.is_some_and(|f| self.agents.iter().any(|a| *a == f.address.as_str()));
        if from_agent && prepared.class.kind == MailKind::Human {
            let stale = auth.as_ref();
            return unproven::agent_address_mail(&view, &prepared, threading, stale, lookup, now);
        }
        respond::customer_mail(&view, &prepared, threading, lookup, now)
    }
}

impl Pipeline {
    /// The quarantine reason and the sender's notice for a mail of `size`
    /// bytes (`raw` is the whole mail, or its header when `server_copy`
    /// says where the whole one stays). The notice gives the size and the
    /// limit only: where the mail is kept is the operator's business.
    fn oversize(
        &self,
        raw: &[u8],
        size: u64,
        server_copy: Option<&str>,
        lookup: &impl IngestLookup,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(String, Option<Box<OutgoingMail>>)> {
        let limit = self.max_message_bytes;
        let told = format!("the mail is {size} bytes, more than the limit of {limit} bytes");
        let Some(copy) = server_copy else {
            let notice = respond::oversize_notice(self, raw, size, lookup, now)?;
            return Ok((told, notice));
        };
        let kept =
            format!("only its header was fetched; the full mail stays on the IMAP server ({copy})");
        if size <= limit {
            // A retry after the limit was raised: the stored header alone
            // is not the mail, so it stays here (no second notice).
            let reason = format!(
                "the mail is {size} bytes, within the limit of {limit} bytes now, but {kept}: \
                 fetch it from there and run `postdesk ingest`"
            );
            return Ok((reason, None));
        }
        let notice = respond::oversize_notice(self, raw, size, lookup, now)?;
        Ok((format!("{told}; {kept}"), notice))
    }
}

/// In-Reply-To and References for a mail that answers `mail`: its first
/// and its last references (as mail clients keep them; 200,000 made a
/// 2.4 MB header on every mail of ours), then its own Message-ID.
pub fn reply_thread(mail: &ParsedMail) -> ThreadHeaders {
    let mut references = compose::trim_references(&mail.references);
    if references.len() > compose::KEPT_REFERENCES {
        // Room for the Message-ID among the last ones.
        references.remove(1);
    }
    if let Some(id) = &mail.message_id
        && !references.contains(id)
    {
        references.push(id.clone());
    }
    ThreadHeaders {
        in_reply_to: mail.message_id.clone(),
        references,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_copies_the_first_and_the_last_references_and_its_own_id() {
        let mail = ParsedMail {
            message_id: Some("own@customer.test".into()),
            references: (0..200_000).map(|i| format!("r{i}@x.test")).collect(),
            ..ParsedMail::default()
        };
        let thread = reply_thread(&mail);
        assert_eq!(thread.references.len(), compose::KEPT_REFERENCES + 1);
        assert_eq!(thread.references[0], "r0@x.test");
        assert_eq!(thread.references[1], "r199981@x.test");
        assert_eq!(thread.references.last().unwrap(), "own@customer.test");
        assert_eq!(mail.referenced_ids().len(), parse::MAX_REFERENCES_READ);
        assert_eq!(mail.referenced_ids()[0], "r199999@x.test");
    }
}
