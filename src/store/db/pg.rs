//! PostgreSQL specifics of the SQL surface: `?N` placeholders rewritten to
//! `$N` (string literals and quoted names left alone), SQLite's `instr(`
//! spelled `strpos(` (same arguments), parameters handed to the client,
//! and errors that name the statement. No I/O of its own.

use super::Value;

/// The statement as PostgreSQL reads it.
pub fn translate(sql: &str) -> String {
    numbered(sql).replace("instr(", "strpos(")
}

/// `?1` becomes `$1` and a bare `?` the next number, outside quotes.
pub fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut next = 1;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    digits = next.to_string();
                }
                next = digits.parse::<usize>().map_or(next, |n| n + 1);
                out.push('$');
                out.push_str(&digits);
            }
            (None, c) => out.push(c),
        }
    }
    out
}

pub fn refs<'v>(values: &'v [Value<'v>]) -> Vec<&'v (dyn postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// A PostgreSQL failure: the server's SQLSTATE and message (none when the
/// connection itself failed), and the statement's start.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL: {message} (in `{statement} …`)")]
pub struct PgError {
    pub code: Option<String>,
    message: String,
    statement: String,
}

impl PgError {
    /// A failure that says nothing about the mail or the request: the
    /// connection was lost, the server is restarting, a deadlock or a
    /// serialization conflict with another daemon, a lock or resource
    /// limit. Trying again later is the answer, never a quarantine.
    pub fn is_transient(&self) -> bool {
        match self.code.as_deref() {
            None => true,
            Some(code) => {
                ["08", "40", "53", "57"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || code == "55P03"
            }
        }
    }
}

/// Whether `err` is a [`PgError::is_transient`] one.
pub fn is_transient(err: &anyhow::Error) -> bool {
    err.downcast_ref::<PgError>()
        .is_some_and(PgError::is_transient)
}

/// A client error with the server's code and message and the statement's start.
pub fn explain(err: postgres::Error, sql: &str) -> anyhow::Error {
    let statement: String = sql.split_whitespace().take(8).collect::<Vec<_>>().join(" ");
    let (code, message) = match err.as_db_error() {
        Some(db) => (Some(db.code().code().to_string()), db.message().to_string()),
        None => (None, format!("{err:#}")),
    };
    PgError {
        code,
        message,
        statement,
    }
    .into()
}

/// The connection's thread is gone (its connection with it).
pub fn connection_lost(what: &str) -> anyhow::Error {
    PgError {
        code: None,
        message: what.to_string(),
        statement: String::new(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_and_conflicts_are_transient_bad_sql_is_not() {
        let error = |code: Option<&str>| PgError {
            code: code.map(str::to_string),
            message: String::new(),
            statement: String::new(),
        };
        for code in [
            None,
            Some("40P01"),
            Some("40001"),
            Some("57P01"),
            Some("08006"),
            Some("55P03"),
        ] {
            assert!(error(code).is_transient(), "{code:?}");
        }
        for code in ["23505", "42601", "22021", "42883"] {
            assert!(!error(Some(code)).is_transient(), "{code}");
        }
        assert!(is_transient(&connection_lost("gone")));
        assert!(!is_transient(&anyhow::anyhow!(
            "a mail that does not parse"
        )));
    }

    #[test]
    fn placeholders_are_numbered_outside_quotes_only() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ?2 AND c = ?1 AND d = '?x' AND \"?\" = ?12"),
            "SELECT a FROM t WHERE b = $2 AND c = $1 AND d = '?x' AND \"?\" = $12"
        );
        assert_eq!(numbered("VALUES (?, ?, ?)"), "VALUES ($1, $2, $3)");
        assert_eq!(
            numbered("x = 'it''s ?' AND y = ?1"),
            "x = 'it''s ?' AND y = $1"
        );
    }
}
