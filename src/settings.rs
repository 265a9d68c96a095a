//! Settings: the typed configuration tree. Layered (embedded
//! `config/default.toml` → `--config` file → `POSTDESK__SECTION__KEY`
//! environment variables), validated once at start-up, secrets redacted
//! whenever they are printed. Environment values stay strings until a key's
//! type asks for a number or a boolean (`007` stays `007`). Owns no I/O
//! beyond reading the config file and the secret files (`secret_files`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat, Source, Value, ValueKind};
use serde::{Deserialize, Serialize, Serializer};

mod queues;
mod safety;
mod secret_files;

pub use queues::{MailboxSettings, Queue};

/// The defaults, embedded so that the binary runs with no file at all.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A password or key: never shown in logs or in `check-config`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    Tls,
    Starttls,
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub support: SupportSettings,
    pub imap: ImapSettings,
    pub smtp: SmtpSettings,
    pub database: DatabaseSettings,
    pub web: WebSettings,
    pub limits: LimitSettings,
    pub lmtp: LmtpSettings,
    pub oauth: OAuthSettings,
    pub templates: TemplateSettings,
    /// More support addresses, each a queue (`queues.rs`); typed apart so
    /// that an error names its index.
    #[serde(default, skip_deserializing)]
    pub mailbox: Vec<MailboxSettings>,
}

/// The shortest `web.agent_token` or `support.secret` accepted.
const MIN_SECRET_CHARS: usize = 16;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupportSettings {
    /// The name of the first queue (the `[support]` address's tickets).
    pub queue: String,
    pub address: String,
    pub name: String,
    pub tag: String,
    #[serde(deserialize_with = "list_or_commas")]
    pub agents: Vec<String>,
    pub public_url: String,
    pub secret: Secret,
    pub plus_addressing: bool,
    pub agent_list: String,
    pub reopen_days: f64,
    pub autoclose_days: f64,
    pub trusted_authserv_id: String,
    pub trusted_results_below_received: bool,
    pub agent_token_days: f64,
    #[serde(deserialize_with = "list_or_commas")]
    pub lists: Vec<String>,
    /// The language of the built-in wording of our mails (en, de, fr, es).
    pub language: String,
}

/// The company's own wording of our mails (`outbound::templates`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSettings {
    /// A folder of override files; empty: the built-in wording only.
    pub dir: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImapSettings {
    pub enabled: bool,
    pub auth: AuthMethod,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub password: Secret,
    pub mailbox: String,
    pub after_ingest: AfterIngest,
    pub poll_seconds: u64,
    pub idle: bool,
    pub idle_refresh_seconds: u64,
    pub ca_file: String,
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub auth: AuthMethod,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub password: Secret,
    pub ca_file: String,
    pub timeout_seconds: u64,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub path: PathBuf,
    /// `postgres://…` selects PostgreSQL; empty keeps SQLite at `path`
    /// (which still places the files kept beside the database).
    #[serde(default)]
    pub url: Secret,
    /// PEM CA certificates trusted for PostgreSQL's TLS beside the
    /// system's (a private CA); empty: the system's only.
    #[serde(default)]
    pub ca_file: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    pub listen: String,
    pub agent_token: Secret,
    pub admin_listen: String,
    pub max_connections: usize,
    pub header_timeout_seconds: u64,
    pub idle_timeout_seconds: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub max_message_bytes: u64,
    pub auto_replies_per_hour: u32,
    pub max_mail_seconds: u64,
    pub confirm_max_age_hours: f64,
}

/// How postdesk logs in to IMAP or SMTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// `username` and `password` (LOGIN / AUTH PLAIN).
    Password,
    /// SASL XOAUTH2 with an access token from the `[oauth]` section.
    Xoauth2,
}

/// LMTP intake: the MTA hands mail straight to postdesk.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LmtpSettings {
    /// `HOST:PORT` or `unix:PATH`; empty: no LMTP server.
    pub listen: String,
}

/// OAuth2 for `auth = "xoauth2"`: where access tokens come from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    /// "microsoft", "google" or "custom".
    pub provider: String,
    /// Microsoft's tenant (a GUID, a domain, or "common"/"organizations").
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Empty: the provider's preset; required for "custom".
    pub token_url: String,
    /// Empty: the provider's preset; required for "custom".
    pub device_url: String,
    /// Empty: the provider's preset.
    #[serde(deserialize_with = "list_or_commas")]
    pub scopes: Vec<String>,
    /// Where the refresh token is kept (written back when it rotates).
    pub refresh_token_file: String,
}

/// What happens to a mail on the IMAP server once it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterIngest {
    Seen,
    Move(String),
    Delete,
}

impl AfterIngest {
    fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "seen" => Some(AfterIngest::Seen),
            "delete" => Some(AfterIngest::Delete),
            other => other
                .strip_prefix("move:")
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(|f| AfterIngest::Move(f.to_string())),
        }
    }
}

impl<'de> Deserialize<'de> for AfterIngest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        AfterIngest::parse(&value).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{value}` is not one of \"seen\", \"move:FOLDER\", \"delete\""
            ))
        })
    }
}

impl Serialize for AfterIngest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AfterIngest::Seen => s.serialize_str("seen"),
            AfterIngest::Delete => s.serialize_str("delete"),
            AfterIngest::Move(folder) => s.serialize_str(&format!("move:{folder}")),
        }
    }
}

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the configuration: {0}")]
    Load(String),
    #[error("invalid configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl Settings {
    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(file, env)
    }

    /// Like [`Settings::load`] with an explicit environment (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        env: Vec<(String, String)>,
    ) -> Result<Settings, SettingsError> {
        let (env, mailbox_env) = queues::split_env(env)?;
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            if !path.exists() {
                return Err(SettingsError::Load(format!(
                    "the file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        // No `try_parsing`: it turned `007` into 7 for every key. Strings
        // become numbers and booleans where the key's type asks for one;
        // `support.agents` splits its commas itself (`list_or_commas`).
        let environment = Environment::with_prefix("POSTDESK")
            .separator("__")
            .prefix_separator("__")
            .source(Some(env.into_iter().collect()));
        let mut root = builder
            .add_source(environment)
            .build()
            .and_then(|config| config.collect())
            .map_err(|e| load_error(e.to_string()))?;
        secret_files::resolve(&mut root)?;
        let mailbox = queues::take_mailboxes(&mut root, mailbox_env)?;
        let mut settings: Settings = Value::new(None, ValueKind::Table(root))
            .try_deserialize()
            .map_err(|e| load_error(e.to_string()))?;
        settings.mailbox = mailbox;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot; each error names its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &str, reason: &str| {
            Err(SettingsError::Invalid {
                key: key.to_string(),
                reason: reason.to_string(),
            })
        };
        if !is_address(&self.support.address) {
            return invalid(
                "support.address",
                "must be an e-mail address like tickets@example.com",
            );
        }
        if let Some(bad) = self.support.agents.iter().find(|a| !is_address(a)) {
            return invalid(
                "support.agents",
                &format!("`{bad}` is not an e-mail address"),
            );
        }
        if !self.support.agent_list.is_empty() && !is_address(&self.support.agent_list) {
            return invalid("support.agent_list", "must be empty or an e-mail address");
        }
        for (key, days) in [
            ("support.reopen_days", self.support.reopen_days),
            ("support.autoclose_days", self.support.autoclose_days),
            ("support.agent_token_days", self.support.agent_token_days),
        ] {
            if !(days.is_finite() && days >= 0.0) {
                return invalid(key, "must be a number of days, 0 or more");
            }
        }
        let hours = self.limits.confirm_max_age_hours;
        if !(hours.is_finite() && hours >= 0.0) {
            return invalid(
                "limits.confirm_max_age_hours",
                "must be a number of hours, 0 or more",
            );
        }
        if !queues::is_word(&self.support.tag) {
            return invalid("support.tag", "must be one word of letters, digits, - or _");
        }
        let url = &self.support.public_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return invalid("support.public_url", "must start with http:// or https://");
        }
        queues::validate(self)?;
        if let Some(reason) = safety::lmtp_listen_refusal(&self.lmtp.listen) {
            return invalid("lmtp.listen", &reason);
        }
        if self.web.listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "web.listen",
                "must be an address and port like 127.0.0.1:8025",
            );
        }
        if !self.web.admin_listen.is_empty() && self.web.admin_listen.parse::<SocketAddr>().is_err()
        {
            return invalid(
                "web.admin_listen",
                "must be empty or an address and port like 127.0.0.1:8026",
            );
        }
        if self.web.max_connections == 0 {
            return invalid("web.max_connections", "must be at least 1");
        }
        for (key, seconds) in [
            (
                "web.header_timeout_seconds",
                self.web.header_timeout_seconds,
            ),
            ("web.idle_timeout_seconds", self.web.idle_timeout_seconds),
            ("limits.max_mail_seconds", self.limits.max_mail_seconds),
        ] {
            if seconds == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.database.path.as_os_str().is_empty() {
            return invalid("database.path", "must not be empty");
        }
        let url = self.database.url.expose();
        if !url.is_empty() && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return invalid(
                "database.url",
                "must be empty (SQLite at database.path) or start with postgres://",
            );
        }
        if self.limits.max_message_bytes < 1024 {
            return invalid("limits.max_message_bytes", "must be at least 1024");
        }
        // Both guard something over the network: the agents' view and every
        // signed link and Message-ID. Short ones could be guessed.
        for (key, secret) in [
            ("web.agent_token", &self.web.agent_token),
            ("support.secret", &self.support.secret),
        ] {
            let length = secret.expose().chars().count();
            if length > 0 && length < MIN_SECRET_CHARS {
                return invalid(
                    key,
                    &format!(
                        "must be empty or at least {MIN_SECRET_CHARS} characters \
                         (for example the output of `openssl rand -hex 16`)"
                    ),
                );
            }
        }
        Ok(())
    }

    /// Settings that are valid but probably a mistake, one line each (for
    /// `check-config` and the daemon's start).
    pub fn warnings(&self) -> Vec<String> {
        safety::warnings(self)
    }

    /// The settings as TOML, secrets shown as `***`.
    pub fn redacted_toml(&self) -> String {
        // Serialising a plain struct of strings and numbers cannot fail.
        let value = serde_json::to_value(self).unwrap_or_default();
        to_toml(&value)
    }

    /// The support address's domain: where our Message-IDs live.
    pub fn support_domain(&self) -> &str {
        self.support
            .address
            .rsplit('@')
            .next()
            .unwrap_or("localhost")
    }

    /// An agent of any queue.
    pub fn is_agent(&self, address: &str) -> bool {
        let agents = self.support.agents.iter();
        agents
            .chain(self.mailbox.iter().flat_map(|m| m.agents.iter()))
            .any(|a| a.eq_ignore_ascii_case(address))
    }
}

/// config-rs reports "... for key `imap.port`"; we lift the key out so the
/// operator reads it first.
fn load_error(message: String) -> SettingsError {
    let key = message
        .split("key `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string);
    match key {
        Some(key) => SettingsError::Invalid {
            key,
            reason: message,
        },
        None => match message.split("unknown field `").nth(1) {
            Some(rest) => SettingsError::Invalid {
                key: rest.split('`').next().unwrap_or_default().to_string(),
                reason: message.clone(),
            },
            None => SettingsError::Load(message),
        },
    }
}

/// A list from a TOML array, or from one string of comma-separated items
/// (as an environment variable gives it), each trimmed, empty ones dropped.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCommas {
        List(Vec<String>),
        Commas(String),
    }
    let items = match ListOrCommas::deserialize(d)? {
        ListOrCommas::List(items) => items,
        ListOrCommas::Commas(text) => text.split(',').map(str::to_string).collect(),
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_string())
        .filter(|item| !item.is_empty())
        .collect())
}

fn is_address(value: &str) -> bool {
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !value.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// A tiny JSON → TOML printer for `check-config` (sections of scalars and
/// lists; arrays of tables as `[[mailbox]]` with dotted keys for their
/// sub-tables), so that no TOML serializer is needed.
fn to_toml(value: &serde_json::Value) -> String {
    let mut out = String::new();
    let Some(sections) = value.as_object() else {
        return out;
    };
    for (section, fields) in sections {
        match fields {
            serde_json::Value::Array(tables) => {
                for table in tables {
                    out.push_str(&format!("[[{section}]]\n"));
                    toml_fields(&mut out, "", table);
                    out.push('\n');
                }
            }
            fields => {
                out.push_str(&format!("[{section}]\n"));
                toml_fields(&mut out, "", fields);
                out.push('\n');
            }
        }
    }
    out
}

fn toml_fields(out: &mut String, prefix: &str, fields: &serde_json::Value) {
    let Some(fields) = fields.as_object() else {
        return;
    };
    for (key, v) in fields {
        if v.is_object() {
            toml_fields(out, &format!("{prefix}{key}."), v);
        } else {
            out.push_str(&format!("{prefix}{key} = {v}\n"));
        }
    }
}

#[cfg(test)]
mod env_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::load_with_env(None, vec![]).unwrap();
        assert_eq!(s.support.tag, "Ticket");
        assert_eq!(s.imap.mailbox, "INBOX");
        assert_eq!(s.imap.after_ingest, AfterIngest::Seen);
        assert_eq!(s.web.listen, "127.0.0.1:8025");
    }

    #[test]
    fn environment_overrides_keys() {
        let s = Settings::load_with_env(
            None,
            env(&[
                ("POSTDESK__IMAP__PORT", "1993"),
                ("POSTDESK__IMAP__AFTER_INGEST", "move:Done"),
                ("POSTDESK__SUPPORT__AGENTS", "a@example.test,b@example.test"),
            ]),
        )
        .unwrap();
        assert_eq!(s.imap.port, 1993);
        assert_eq!(s.imap.after_ingest, AfterIngest::Move("Done".into()));
        assert_eq!(s.support.agents.len(), 2);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = Settings::load_with_env(None, env(&[("POSTDESK__IMAP__TLS", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("imap.tls"), "{err}");
        let err = Settings::load_with_env(None, env(&[("POSTDESK__WEB__LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("web.listen"), "{err}");
        let err = Settings::load_with_env(None, env(&[("POSTDESK__SUPPORT__ADDRESS", "nope")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("support.address"), "{err}");
    }

    #[test]
    fn a_short_secret_is_refused_and_named() {
        for (var, key) in [
            ("POSTDESK__WEB__AGENT_TOKEN", "web.agent_token"),
            ("POSTDESK__SUPPORT__SECRET", "support.secret"),
        ] {
            let err = Settings::load_with_env(None, env(&[(var, "letmein")]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
            let long = "0123456789abcdef";
            let s = Settings::load_with_env(None, env(&[(var, long)])).unwrap();
            assert!(s.redacted_toml().contains("***"));
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let s =
            Settings::load_with_env(None, env(&[("POSTDESK__IMAP__PASSWORD", "hunter2")])).unwrap();
        assert_eq!(s.imap.password.expose(), "hunter2");
        let shown = s.redacted_toml();
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("password = \"***\""), "{shown}");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
