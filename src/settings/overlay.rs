//! The `[[mailbox]]` tables before they are typed: the environment's
//! `POSTDESK__MAILBOX__N__…` variables put into the Nth table (config-rs
//! makes no arrays of them), each table overlaid key by key on the global
//! `[imap]`, `[smtp]` and `[oauth]` (already secret-resolved) and given
//! `[support]`'s `name`, `agents` and `lists` where it sets none, its own
//! `*_file` secrets read, and typed; every error names its mailbox
//! (`mailbox[0].imap.port`). It reads no file but those secret files.

use std::collections::BTreeMap;

use config::{Map, Value, ValueKind};

use super::super::{SettingsError, load_error, secret_files};
use super::MailboxSettings;

/// The sections a `[[mailbox]]` may overlay.
const OVERLAID: [&str; 3] = ["imap", "smtp", "oauth"];
/// The `[support]` keys a `[[mailbox]]` takes when it does not set them.
const INHERITED: [&str; 3] = ["name", "agents", "lists"];
const ENV_PREFIX: &str = "POSTDESK__MAILBOX__";

/// Takes the `POSTDESK__MAILBOX__N__…` variables out of `env`: config-rs
/// makes no arrays of them. Returns the rest and, per index, the variables'
/// key paths (lower case) and values.
#[allow(clippy::type_complexity)]
pub(in crate::settings) fn split_env(
    env: Vec<(String, String)>,
) -> Result<
    (
        Vec<(String, String)>,
        BTreeMap<usize, Vec<(Vec<String>, String)>>,
    ),
    SettingsError,
> {
    let mut rest = Vec::new();
    let mut mailboxes: BTreeMap<usize, Vec<(Vec<String>, String)>> = BTreeMap::new();
    for (name, value) in env {
        let upper = name.to_ascii_uppercase();
        let Some(tail) = upper.strip_prefix(ENV_PREFIX) else {
            rest.push((name, value));
            continue;
        };
        let mut parts = tail.split("__");
        let index = parts.next().and_then(|i| i.parse::<usize>().ok());
        let path: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
        match index {
            Some(index) if !path.is_empty() && path.iter().all(|p| !p.is_empty()) => {
                mailboxes.entry(index).or_default().push((path, value));
            }
            _ => {
                return Err(SettingsError::Invalid {
                    key: "mailbox".to_string(),
                    reason: format!(
                        "the environment variable {name} names no mailbox: write \
                         {ENV_PREFIX}N__KEY, N counting from 0 (e.g. {ENV_PREFIX}0__IMAP__PASSWORD)"
                    ),
                });
            }
        }
    }
    Ok((rest, mailboxes))
}

/// Takes `mailbox` out of the merged tree, applies the environment to it,
/// overlays each one on the (secret-resolved) global sections and types it.
/// An index past the configured mailboxes adds one (empty ones between are
/// refused by validation: they have no queue).
pub(in crate::settings) fn take_mailboxes(
    root: &mut Map<String, Value>,
    env: BTreeMap<usize, Vec<(Vec<String>, String)>>,
) -> Result<Vec<MailboxSettings>, SettingsError> {
    let mut tables = match root.remove("mailbox").map(|v| v.kind) {
        None | Some(ValueKind::Nil) => Vec::new(),
        Some(ValueKind::Array(items)) => items,
        Some(_) => return Err(invalid("mailbox", "must be [[mailbox]] tables".into())),
    };
    if let Some(last) = env.keys().next_back() {
        tables.resize_with(tables.len().max(last + 1), || {
            Value::new(None, ValueKind::Table(Map::new()))
        });
    }
    for (index, vars) in env {
        for (path, value) in vars {
            set_path(&mut tables[index], &path, value).map_err(|reason| {
                invalid(&format!("mailbox[{index}].{}", path.join(".")), reason)
            })?;
        }
    }
    tables
        .into_iter()
        .enumerate()
        .map(|(i, table)| typed_mailbox(root, i, table))
        .collect()
}

fn typed_mailbox(
    root: &Map<String, Value>,
    i: usize,
    table: Value,
) -> Result<MailboxSettings, SettingsError> {
    let ValueKind::Table(mut fields) = table.kind else {
        return Err(invalid(&format!("mailbox[{i}]"), "must be a table".into()));
    };
    let prefix = |e: SettingsError| prefixed(e, i);
    let support = table_of(root.get("support"));
    for key in INHERITED {
        if !fields.contains_key(key)
            && let Some(value) = support.get(key)
        {
            fields.insert(key.to_string(), value.clone());
        }
    }
    for section in OVERLAID {
        let base = table_of(root.get(section));
        let merged = match fields.remove(section).map(|v| v.kind) {
            None | Some(ValueKind::Nil) => base,
            Some(ValueKind::Table(own)) => overlay(base, own),
            Some(_) => {
                return Err(invalid(
                    &format!("mailbox[{i}].{section}"),
                    "must be a table of keys".into(),
                ));
            }
        };
        fields.insert(
            section.to_string(),
            Value::new(None, ValueKind::Table(merged)),
        );
    }
    secret_files::resolve(&mut fields).map_err(prefix)?;
    Value::new(None, ValueKind::Table(fields))
        .try_deserialize::<MailboxSettings>()
        .map_err(|e| prefix(load_error(e.to_string())))
}

/// `own` over `base`, key by key. A mailbox's `KEY_file` replaces the
/// `KEY` it would otherwise inherit (unless it sets `KEY` too, which the
/// secret check then refuses as both set).
fn overlay(mut base: Map<String, Value>, own: Map<String, Value>) -> Map<String, Value> {
    for (key, value) in &own {
        if let Some(secret) = key.strip_suffix("_file")
            && !own.contains_key(secret)
        {
            base.remove(secret);
        }
        base.insert(key.clone(), value.clone());
    }
    base
}

fn table_of(value: Option<&Value>) -> Map<String, Value> {
    match value.map(|v| &v.kind) {
        Some(ValueKind::Table(t)) => t.clone(),
        _ => Map::new(),
    }
}

fn set_path(target: &mut Value, path: &[String], value: String) -> Result<(), String> {
    let ValueKind::Table(fields) = &mut target.kind else {
        return Err("is not a table".into());
    };
    match path {
        [] => Err("names no key".into()),
        [key] => {
            fields.insert(key.clone(), Value::new(None, ValueKind::String(value)));
            Ok(())
        }
        [key, rest @ ..] => {
            let child = fields
                .entry(key.clone())
                .or_insert_with(|| Value::new(None, ValueKind::Table(Map::new())));
            set_path(child, rest, value)
        }
    }
}

/// The error of one mailbox's keys, named with its index.
fn prefixed(err: SettingsError, i: usize) -> SettingsError {
    match err {
        SettingsError::Invalid { key, reason } => {
            let full = format!("mailbox[{i}].{key}");
            SettingsError::Invalid {
                reason: reason.replace(&format!("`{key}`"), &format!("`{full}`")),
                key: full,
            }
        }
        SettingsError::Load(reason) => invalid(&format!("mailbox[{i}]"), reason),
    }
}

pub(super) fn invalid(key: &str, reason: String) -> SettingsError {
    SettingsError::Invalid {
        key: key.to_string(),
        reason,
    }
}
