//! Queues: several support addresses. The first queue is `[support]` with
//! `[imap]`, `[smtp]` and `[oauth]`; each `[[mailbox]]` adds one more, whose
//! partial `imap.*`, `smtp.*` and `oauth.*` tables overlay those sections
//! key by key. The overlay happens on the merged config tree before it is
//! typed, so every key of those sections works there (the `*_file` secrets
//! too, and keys added later). Environment variables reach mailboxes by
//! index (`POSTDESK__MAILBOX__0__IMAP__PASSWORD`, 0-based, as `check-config`
//! names them: `mailbox[0].imap.password`). It also checks each queue's
//! keys. The merging itself is `overlay.rs`. No I/O beyond the secret
//! files (through `secret_files`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    AuthMethod, ImapSettings, OAuthSettings, Settings, SettingsError, SmtpSettings, is_address,
    list_or_commas, safety,
};

#[path = "overlay.rs"]
mod overlay;
use overlay::invalid;
pub(super) use overlay::{split_env, take_mailboxes};

/// One `[[mailbox]]` as configured, its sections already merged with the
/// global ones.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxSettings {
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub address: String,
    pub name: String,
    #[serde(deserialize_with = "list_or_commas")]
    pub agents: Vec<String>,
    #[serde(deserialize_with = "list_or_commas")]
    pub lists: Vec<String>,
    /// Empty: `[support]`'s language.
    #[serde(default)]
    pub language: String,
    pub imap: ImapSettings,
    pub smtp: SmtpSettings,
    pub oauth: OAuthSettings,
}

/// One support address and everything that belongs to it.
#[derive(Debug, Clone)]
pub struct Queue {
    /// One word, unique: stored on each ticket.
    pub name: String,
    pub address: String,
    /// The display name on mail we send and on the customer's pages.
    pub display_name: String,
    pub agents: Vec<String>,
    /// List-Ids of this address's own group alias.
    pub lists: Vec<String>,
    /// The language of the built-in wording of this queue's mails.
    pub language: String,
    pub imap: ImapSettings,
    pub smtp: SmtpSettings,
    pub oauth: OAuthSettings,
    /// `None` for the first queue, else its `[[mailbox]]` index.
    pub index: Option<usize>,
}

impl Queue {
    /// A key of this queue as `check-config` and the errors name it:
    /// `imap.port` for the first queue, `mailbox[1].imap.port` for others.
    pub fn key(&self, key: &str) -> String {
        match self.index {
            None => key.to_string(),
            Some(i) => format!("mailbox[{i}].{key}"),
        }
    }

    /// The key of this queue's IMAP checkpoint: the folder alone for the
    /// first queue (as before queues, so an upgrade goes on where it was),
    /// `username@host/folder` for the others.
    pub fn checkpoint_key(&self) -> String {
        match self.index {
            None => self.imap.mailbox.clone(),
            Some(_) => format!(
                "{}@{}/{}",
                self.imap.username, self.imap.host, self.imap.mailbox
            ),
        }
    }

    pub fn is_agent(&self, address: &str) -> bool {
        self.agents.iter().any(|a| a.eq_ignore_ascii_case(address))
    }
}

impl Settings {
    /// Every queue: the first (`[support]`), then one per `[[mailbox]]`.
    pub fn queues(&self) -> Vec<Queue> {
        let support = &self.support;
        let first = Queue {
            name: support.queue.clone(),
            address: support.address.clone(),
            display_name: support.name.clone(),
            agents: support.agents.clone(),
            lists: support.lists.clone(),
            language: support.language.clone(),
            imap: self.imap.clone(),
            smtp: self.smtp.clone(),
            oauth: self.oauth.clone(),
            index: None,
        };
        let others = self.mailbox.iter().enumerate().map(|(i, m)| Queue {
            name: m.queue.clone(),
            address: m.address.clone(),
            display_name: m.name.clone(),
            agents: m.agents.clone(),
            lists: m.lists.clone(),
            language: if m.language.is_empty() {
                support.language.clone()
            } else {
                m.language.clone()
            },
            imap: m.imap.clone(),
            smtp: m.smtp.clone(),
            oauth: m.oauth.clone(),
            index: Some(i),
        });
        std::iter::once(first).chain(others).collect()
    }

    /// The queue named `name` (without case), if configured.
    pub fn queue(&self, name: &str) -> Option<Queue> {
        self.queues()
            .into_iter()
            .find(|q| q.name.eq_ignore_ascii_case(name))
    }

    /// Each queue's (name, address), the first one first.
    fn queue_addresses(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once((self.support.queue.as_str(), self.support.address.as_str())).chain(
            self.mailbox
                .iter()
                .map(|m| (m.queue.as_str(), m.address.as_str())),
        )
    }

    /// The queue whose support address `address` is (or a plus-address
    /// of it: `support+anything@domain`), compared without case.
    pub fn queue_of_address(&self, address: &str) -> Option<&str> {
        let (local, domain) = address.trim().rsplit_once('@')?;
        let local = local.split_once('+').map_or(local, |(base, _)| base);
        self.queue_addresses()
            .find(|(_, own)| {
                own.rsplit_once('@').is_some_and(|(own_local, own_domain)| {
                    local.eq_ignore_ascii_case(own_local) && domain.eq_ignore_ascii_case(own_domain)
                })
            })
            .map(|(queue, _)| queue)
    }
}

/// Checks each queue: names one word and unique, addresses unique, agents
/// addresses, and its IMAP and SMTP keys (named with the queue's prefix).
pub(super) fn validate(settings: &Settings) -> Result<(), SettingsError> {
    let queues = settings.queues();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut addresses: BTreeMap<String, String> = BTreeMap::new();
    let mut folders: BTreeMap<String, String> = BTreeMap::new();
    let mut token_files: BTreeMap<String, (String, String)> = BTreeMap::new();
    for q in &queues {
        let name_key = q.key(if q.index.is_some() {
            "queue"
        } else {
            "support.queue"
        });
        if !is_word(&q.name) {
            return Err(invalid(
                &name_key,
                format!("`{}` must be one word of letters, digits, - or _", q.name),
            ));
        }
        if let Some(other) = names.insert(q.name.to_lowercase(), name_key.clone()) {
            return Err(invalid(
                &name_key,
                format!("the queue `{}` is named by {other} already", q.name),
            ));
        }
        if let Some(i) = q.index {
            check_mailbox(q, i, &mut addresses)?;
        } else {
            addresses.insert(q.address.to_lowercase(), "support.address".into());
        }
        check_transport(q)?;
        check_token_file(q, &mut token_files)?;
        if q.imap.enabled {
            let folder = format!("{}@{}/{}", q.imap.username, q.imap.host, q.imap.mailbox);
            if let Some(other) = folders.insert(folder.to_lowercase(), q.key("imap")) {
                return Err(invalid(
                    &q.key("imap.mailbox"),
                    format!("{other} reads the same folder ({folder}) already"),
                ));
            }
        }
    }
    Ok(())
}

/// Queues share a refresh-token file only with the same OAuth2 client (then
/// they share one token source, see `app::token_sources`): two clients
/// rotating one file would overwrite each other's token, and a provider
/// that detects the reuse revokes them both.
fn check_token_file(
    q: &Queue,
    seen: &mut BTreeMap<String, (String, String)>,
) -> Result<(), SettingsError> {
    let uses_oauth = [q.imap.auth, q.smtp.auth].contains(&AuthMethod::Xoauth2);
    let file = q.oauth.refresh_token_file.trim();
    if !uses_oauth || file.is_empty() {
        return Ok(());
    }
    let o = &q.oauth;
    let client = format!(
        "{}\0{}\0{}\0{}",
        o.provider, o.tenant, o.client_id, o.token_url
    );
    let key = q.key("oauth.refresh_token_file");
    match seen.get(file) {
        Some((other_client, other)) if *other_client != client => Err(invalid(
            &key,
            format!(
                "`{file}` is the refresh-token file of {other}, for another OAuth2 client: give each client its own file"
            ),
        )),
        Some(_) => Ok(()),
        None => {
            seen.insert(file.to_string(), (client, key));
            Ok(())
        }
    }
}

/// A `[[mailbox]]`'s own keys: its address (unique) and its agents.
fn check_mailbox(
    q: &Queue,
    i: usize,
    addresses: &mut BTreeMap<String, String>,
) -> Result<(), SettingsError> {
    let key = format!("mailbox[{i}].address");
    if !is_address(&q.address) {
        return Err(invalid(
            &key,
            "must be an e-mail address like billing@example.com".into(),
        ));
    }
    if let Some(other) = addresses.insert(q.address.to_lowercase(), key.clone()) {
        return Err(invalid(
            &key,
            format!("`{}` is the address of {other} already", q.address),
        ));
    }
    if let Some(bad) = q.agents.iter().find(|a| !is_address(a)) {
        return Err(invalid(
            &format!("mailbox[{i}].agents"),
            format!("`{bad}` is not an e-mail address"),
        ));
    }
    Ok(())
}

/// One queue's IMAP and SMTP keys.
fn check_transport(q: &Queue) -> Result<(), SettingsError> {
    let (imap, smtp) = (&q.imap, &q.smtp);
    let checks: [(&str, bool, &str); 7] = [
        (
            "imap.host",
            imap.host.trim().is_empty(),
            "must not be empty",
        ),
        ("imap.port", imap.port == 0, "must be between 1 and 65535"),
        (
            "imap.poll_seconds",
            imap.poll_seconds == 0,
            "must be at least 1",
        ),
        (
            "imap.timeout_seconds",
            imap.timeout_seconds == 0,
            "must be at least 1",
        ),
        (
            "smtp.host",
            smtp.host.trim().is_empty(),
            "must not be empty",
        ),
        ("smtp.port", smtp.port == 0, "must be between 1 and 65535"),
        (
            "smtp.max_attempts",
            smtp.max_attempts == 0,
            "must be at least 1",
        ),
    ];
    if let Some((key, _, reason)) = checks.into_iter().find(|(_, bad, _)| *bad) {
        return Err(invalid(&q.key(key), reason.to_string()));
    }
    if let Some((key, reason)) = safety::plaintext_refusal(imap, smtp) {
        return Err(invalid(&q.key(&key), reason));
    }
    // `[oauth]` only when a login uses XOAUTH2 (its keys, or the user name).
    let (imap_login, smtp_login) = ((imap.auth, &*imap.username), (smtp.auth, &*smtp.username));
    crate::oauth::check_settings(imap_login, smtp_login, &q.oauth)
        .map_err(|e| invalid(&q.key(&e.key), e.reason))?;
    for (key, file) in [
        ("imap.ca_file", &imap.ca_file),
        ("smtp.ca_file", &smtp.ca_file),
    ] {
        if !file.is_empty() && !std::path::Path::new(file).is_file() {
            return Err(invalid(
                &q.key(key),
                format!("the file `{file}` does not exist"),
            ));
        }
    }
    Ok(())
}

/// One word of letters, digits, `-` or `_` (a queue name, a tag).
pub(super) fn is_word(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
#[path = "queues_tests.rs"]
mod tests;
