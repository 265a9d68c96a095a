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

/// A client error with the server's message and the statement's start.
pub fn explain(err: postgres::Error, sql: &str) -> anyhow::Error {
    let head: String = sql.split_whitespace().take(8).collect::<Vec<_>>().join(" ");
    match err.as_db_error() {
        Some(db) => anyhow::anyhow!("PostgreSQL: {} (in `{head} …`)", db.message()),
        None => anyhow::Error::new(err).context(format!("PostgreSQL, in `{head} …`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
