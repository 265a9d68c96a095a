//! `*_file` variants of the secrets (`imap.password_file`, …), as systemd
//! credentials and Docker secrets expect: the file's content, one trailing
//! newline trimmed, becomes the secret. Works on the merged config tree
//! before it is typed, so the `*_file` keys never reach the typed settings.
//! It reads only the files those keys name, and never shows their content.

use config::{Map, Value, ValueKind};

use super::SettingsError;

/// Each secret that may come from a file: (section, key).
pub(super) const SECRETS: [(&str, &str); 5] = [
    ("imap", "password"),
    ("oauth", "client_secret"),
    ("smtp", "password"),
    ("support", "secret"),
    ("web", "agent_token"),
];

/// Replaces every non-empty `KEY_file` with the secret read from it; both
/// set, or a file that cannot be read, is an error naming the keys.
pub(super) fn resolve(root: &mut Map<String, Value>) -> Result<(), SettingsError> {
    for (section, key) in SECRETS {
        let Some(Value {
            kind: ValueKind::Table(fields),
            ..
        }) = root.get_mut(section)
        else {
            continue;
        };
        let file_key = format!("{key}_file");
        let path = text_of(fields.remove(&file_key));
        if path.is_empty() {
            continue;
        }
        if !text_of(fields.get(key).cloned()).is_empty() {
            return Err(invalid(
                &format!("{section}.{key}"),
                format!("both `{section}.{key}` and `{section}.{file_key}` are set: keep one"),
            ));
        }
        let secret = read_secret(&path)
            .map_err(|reason| invalid(&format!("{section}.{file_key}"), reason))?;
        fields.insert(key.to_string(), Value::new(None, ValueKind::String(secret)));
    }
    Ok(())
}

/// The secret in `path`: its content less one trailing newline.
fn read_secret(path: &str) -> Result<String, String> {
    let content =
        std::fs::read_to_string(path).map_err(|err| format!("cannot read `{path}`: {err}"))?;
    let secret = trim_one_newline(&content);
    if secret.is_empty() {
        return Err(format!("the file `{path}` is empty"));
    }
    Ok(secret.to_string())
}

/// `echo secret > file` adds one newline; only that one goes, so a secret
/// that really ends in spaces or newlines keeps them.
fn trim_one_newline(content: &str) -> &str {
    content
        .strip_suffix("\r\n")
        .or_else(|| content.strip_suffix('\n'))
        .unwrap_or(content)
}

fn text_of(value: Option<Value>) -> String {
    match value.map(|v| v.kind) {
        None | Some(ValueKind::Nil) => String::new(),
        Some(kind) => Value::new(None, kind).into_string().unwrap_or_default(),
    }
}

fn invalid(key: &str, reason: String) -> SettingsError {
    SettingsError::Invalid {
        key: key.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_trailing_newline_is_trimmed() {
        assert_eq!(trim_one_newline("s3cret\n"), "s3cret");
        assert_eq!(trim_one_newline("s3cret\r\n"), "s3cret");
        assert_eq!(trim_one_newline("s3cret\n\n"), "s3cret\n");
        assert_eq!(trim_one_newline(" s3cret "), " s3cret ");
    }
}
