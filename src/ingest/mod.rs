//! Ingest: raw bytes → an [`Outcome`]: what a mail is, which ticket it
//! belongs to and why, what the store writes and what goes out. parse →
//! classify → thread → strip → apply → compose. Every step is a pure
//! function of its input, the store's facts (read through
//! [`apply::IngestLookup`]) and `now`; the write itself happens at the edge
//! (`store::Store::ingest_mail`), in one transaction.

pub mod apply;
pub mod classify;
pub mod parse;
pub mod strip;
pub mod subject;
pub mod thread;

use chrono::{DateTime, Utc};

use crate::domain::Role;
use crate::outbound::compose::{self, Identity, OutgoingMail, ThreadHeaders};
use crate::settings::Settings;
use crate::tokens::{Purpose, Signer, random_token};
use apply::{AccessLink, Decision, IngestLookup, Plan, TicketChange};
use classify::OwnIdentity;
use parse::{Mailbox, ParsedMail};

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
}

/// The settings-derived context of ingest: who we are and our limits.
#[derive(Clone)]
pub struct Pipeline {
    pub identity: Identity,
    pub own: OwnIdentity,
    pub signer: Signer,
    pub domain: String,
    pub public_url: String,
    pub agents: Vec<String>,
    pub max_message_bytes: u64,
    pub auto_replies_per_hour: u32,
}

impl Pipeline {
    /// `secret` is the HMAC key (configured or kept in the database).
    pub fn new(settings: &Settings, secret: &str) -> Pipeline {
        let domain = settings.support_domain().to_string();
        let loop_value = format!(
            "{}",
            crate::tokens::hash_token(secret).get(..16).unwrap_or("")
        );
        Pipeline {
            identity: Identity {
                address: settings.support.address.to_ascii_lowercase(),
                name: settings.support.name.clone(),
                tag: settings.support.tag.clone(),
                loop_value: loop_value.clone(),
            },
            own: OwnIdentity {
                addresses: vec![settings.support.address.to_ascii_lowercase()],
                message_id_domain: domain.clone(),
                loop_header_value: loop_value,
            },
            signer: Signer::new(secret),
            domain,
            public_url: settings
                .support
                .public_url
                .trim_end_matches('/')
                .to_string(),
            agents: settings
                .support
                .agents
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect(),
            max_message_bytes: settings.limits.max_message_bytes,
            auto_replies_per_hour: settings.limits.auto_replies_per_hour,
        }
    }

    /// The private link to a ticket.
    pub fn ticket_link(&self, token: &str) -> String {
        format!("{}/t/{token}", self.public_url)
    }

    /// The private link to all tickets of one requester.
    pub fn requester_link(&self, token: &str) -> String {
        format!("{}/r/{token}", self.public_url)
    }

    /// Runs the pure pipeline over one raw mail.
    #[tracing::instrument(skip_all, fields(bytes = raw.len()))]
    pub fn process(
        &self,
        raw: &[u8],
        lookup: &impl IngestLookup,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Outcome> {
        let hash_key = || {
            use sha2::Digest;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(raw)))
        };
        if raw.len() as u64 > self.max_message_bytes {
            let key = hash_key();
            if lookup.is_seen(&key)? {
                return Ok(Outcome::Duplicate);
            }
            let reason = format!(
                "the mail is {} bytes, more than the limit of {} bytes",
                raw.len(),
                self.max_message_bytes
            );
            let notice = self.oversize_notice(raw, &reason, lookup, now)?;
            return Ok(Outcome::Quarantine {
                reason,
                dedup_key: key,
                notice,
            });
        }
        let mail = match parse::parse(raw) {
            Ok(mail) => mail,
            Err(err) => {
                let key = hash_key();
                if lookup.is_seen(&key)? {
                    return Ok(Outcome::Duplicate);
                }
                let reason = format!("the mail cannot be read: {err}");
                return Ok(Outcome::Quarantine {
                    reason,
                    dedup_key: key,
                    notice: None,
                });
            }
        };
        let class = classify::classify(&mail, &self.own);
        let threading = thread::thread(&mail, &self.signer, &self.identity.tag, lookup)?;
        let decision = apply::decide(
            &mail,
            &class,
            threading,
            lookup,
            random_token()?,
            now,
            self.auto_replies_per_hour,
        )?;
        match decision {
            Decision::Duplicate => Ok(Outcome::Duplicate),
            Decision::Quarantine { reason } => Ok(Outcome::Quarantine {
                reason,
                dedup_key: mail.dedup_key(),
                notice: None,
            }),
            Decision::Store {
                ticket,
                message,
                participants,
                confirm,
            } => {
                let participants = self.without_ourselves(participants);
                let mut outgoing = Vec::new();
                let mut links = Vec::new();
                if let TicketChange::Create(new) = &ticket {
                    links.push(AccessLink::Ticket {
                        token: new.access_token.clone(),
                        ticket: new.number,
                    });
                    if confirm {
                        let requester_token = random_token()?;
                        outgoing.push(self.confirmation(
                            &mail,
                            new,
                            &requester_token,
                            &message.text,
                            now,
                        )?);
                        links.push(AccessLink::Requester {
                            token: requester_token,
                            address: new.requester.address.clone(),
                        });
                    }
                }
                Ok(Outcome::Stored(Box::new(Plan {
                    dedup_key: mail.dedup_key(),
                    ticket,
                    participants,
                    message,
                    attachments: mail.attachments,
                    outgoing,
                    links,
                })))
            }
        }
    }

    fn confirmation(
        &self,
        mail: &ParsedMail,
        ticket: &apply::NewTicket,
        requester_token: &str,
        received_text: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<OutgoingMail> {
        let message_id =
            self.signer
                .message_id(ticket.number, Purpose::Confirmation, None, &self.domain)?;
        let link = self.ticket_link(&ticket.access_token);
        let requester_link = self.requester_link(requester_token);
        let c = compose::Confirmation {
            ticket: ticket.number,
            subject: &ticket.subject,
            to: &ticket.requester,
            received_text,
            status_link: &link,
            requester_link: &requester_link,
            message_id: &message_id,
            thread: reply_thread(mail),
        };
        compose::confirmation(&self.identity, &c, now)
    }

    /// A polite note for a mail too large to take, unless its sender is a
    /// machine or has had enough automatic mail.
    fn oversize_notice(
        &self,
        raw: &[u8],
        reason: &str,
        lookup: &impl IngestLookup,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<Box<OutgoingMail>>> {
        // Only the header section is read, so a huge body costs nothing.
        let head_end = find_header_end(raw);
        let Ok(head) = parse::parse(&raw[..head_end]) else {
            return Ok(None);
        };
        let class = classify::classify(&head, &self.own);
        let Some(from) = head.from.clone() else {
            return Ok(None);
        };
        let since = now - chrono::Duration::hours(1);
        if class.suppress_auto_reply
            || lookup.automatic_mails_since(&from.address, since)? >= self.auto_replies_per_hour
        {
            return Ok(None);
        }
        let message_id = format!("pd.notice.{}@{}", random_token()?, self.domain);
        let note = compose::refusal(
            &self.identity,
            &from,
            &head.subject,
            reason,
            &message_id,
            reply_thread(&head),
            now,
        )?;
        Ok(Some(Box::new(note)))
    }

    /// Our own addresses and the agents are never Cc participants.
    fn without_ourselves(&self, participants: Vec<(Mailbox, Role)>) -> Vec<(Mailbox, Role)> {
        participants
            .into_iter()
            .filter(|(m, role)| {
                *role == Role::Requester
                    || (!self.own.addresses.contains(&m.address)
                        && !self.agents.contains(&m.address)
                        && !is_our_plus_address(&m.address, &self.identity.address))
            })
            .collect()
    }
}

/// In-Reply-To and References for a mail that answers `mail`.
pub fn reply_thread(mail: &ParsedMail) -> ThreadHeaders {
    let mut references = mail.references.clone();
    if let Some(id) = &mail.message_id {
        if !references.contains(id) {
            references.push(id.clone());
        }
    }
    ThreadHeaders {
        in_reply_to: mail.message_id.clone(),
        references,
    }
}

fn is_our_plus_address(address: &str, support: &str) -> bool {
    match (address.split_once('@'), support.split_once('@')) {
        (Some((local, domain)), Some((s_local, s_domain))) => {
            domain == s_domain && local.starts_with(&format!("{s_local}+"))
        }
        _ => false,
    }
}

/// The offset just past the blank line that ends the header section.
fn find_header_end(raw: &[u8]) -> usize {
    let limit = raw.len().min(256 * 1024);
    raw[..limit]
        .windows(2)
        .position(|w| w == b"\n\n")
        .or_else(|| raw[..limit].windows(4).position(|w| w == b"\r\n\r\n"))
        .map(|p| p + 2)
        .unwrap_or(limit)
}
