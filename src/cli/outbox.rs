//! `postdesk outbox list [--failed] [--json] [--limit N]` and `postdesk
//! outbox retry ID|--all-failed`: what postdesk sent or tries to send, and
//! failed mail put back in the queue with the same stored bytes (so the
//! same Message-ID; the attempts start again at 0). A running daemon picks
//! a retried mail up within a second. It says which queues' SMTP login the
//! server refuses and which settings keys to fix (their mail then waits as
//! pending, see `outbound::auth_watch`). It does not compose or change any
//! mail.

use std::process::ExitCode;

use chrono::Utc;

use crate::settings::Settings;
use crate::store::{OutboxEntry, OutboxRetry, SmtpAuthFailure, Store};
use crate::terminal;

/// Runs `outbox list`.
pub fn list(
    settings: &Settings,
    failed_only: bool,
    json: bool,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let (store, _) = crate::app::open_store(settings)?;
    warn_if_login_refused(&store)?;
    let (entries, total) = store.outbox_list(failed_only, limit)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(ExitCode::SUCCESS);
    }
    for e in &entries {
        println!("{}", row(e));
    }
    let shown = i64::try_from(entries.len()).unwrap_or(i64::MAX);
    if shown < total {
        eprintln!("postdesk: the newest {shown} of {total} shown (--limit N for more)");
    } else if total == 0 {
        let what = if failed_only {
            "no failed mail"
        } else {
            "no mail"
        };
        eprintln!("postdesk: {what} in the outbox");
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of `outbox list`: id, status, ticket, recipients, subject,
/// attempts, created and sent time, then the last error, each a column.
fn row(e: &OutboxEntry) -> String {
    let ticket = e
        .ticket
        .map(|n| format!("#{n}"))
        .unwrap_or_else(|| "-".into());
    let sent = e
        .sent_at
        .map(|t| format!("sent {}", t.format("%Y-%m-%d %H:%M")))
        .unwrap_or_else(|| "-".into());
    format!(
        "{}\t{}\t{ticket}\t{}\t{}\t{} attempts\tcreated {}\t{sent}\t{}",
        e.id,
        e.status,
        terminal::line(&e.recipients.join(", ")),
        terminal::line(&e.subject),
        e.attempts,
        e.created_at.format("%Y-%m-%d %H:%M"),
        terminal::line(e.last_error.as_deref().unwrap_or("-"))
    )
}

/// Runs `outbox retry ID` (`id`) or `outbox retry --all-failed` (`None`).
pub fn retry(settings: &Settings, id: Option<i64>) -> anyhow::Result<ExitCode> {
    let (store, _) = crate::app::open_store(settings)?;
    let Some(id) = id else {
        let ids = store.outbox_retry_all_failed(Utc::now())?;
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>();
        match ids.len() {
            0 => println!("no failed mail to retry"),
            n => println!("{n} failed mails queued again: {}", list.join(", ")),
        }
        warn_if_login_refused(&store)?;
        return Ok(ExitCode::SUCCESS);
    };
    let before = store.outbox_entry(id)?;
    let outcome = store.outbox_retry(id, Utc::now())?;
    let Some(entry) = before else {
        eprintln!("postdesk: there is no outbox mail {id}");
        return Ok(ExitCode::FAILURE);
    };
    let mail = format!(
        "outbox mail {id} <{}> to {}",
        terminal::line(&entry.message_id),
        terminal::line(&entry.recipients.join(", "))
    );
    match outcome {
        OutboxRetry::Requeued => {
            let why = entry.last_error.as_deref().unwrap_or("no error recorded");
            println!(
                "{mail} is queued again, same Message-ID (it had failed: {})",
                terminal::line(why)
            );
        }
        OutboxRetry::AlreadyQueued => println!("{mail} is already {}", entry.status),
        OutboxRetry::AlreadySent => {
            eprintln!("postdesk: {mail} was sent already; it is not sent twice");
            return Ok(ExitCode::FAILURE);
        }
        OutboxRetry::NotFound => {
            eprintln!("postdesk: there is no outbox mail {id}");
            return Ok(ExitCode::FAILURE);
        }
    }
    warn_if_login_refused(&store)?;
    Ok(ExitCode::SUCCESS)
}

/// Says on stderr, per refused route, that its queues' mail waits for a
/// login the server refuses, and which keys to fix.
fn warn_if_login_refused(store: &Store) -> anyhow::Result<()> {
    for failure in store.smtp_auth_failures()? {
        eprintln!("{}", refusal_warning(&failure));
    }
    Ok(())
}

fn refusal_warning(failure: &SmtpAuthFailure) -> String {
    let queues = failure.queues.join(", ");
    let (noun, pronoun) = if failure.queues.len() == 1 {
        ("queue", "its")
    } else {
        ("queues", "their")
    };
    format!(
        "postdesk: warning: the SMTP server has refused the login for {noun} {} since {} \
         ({pronoun} mail waits as pending; fix {} and restart): {}",
        terminal::line(&queues),
        failure.since.format("%Y-%m-%d %H:%M UTC"),
        terminal::line(&failure.hint),
        terminal::line(&failure.error)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_warning_names_the_queue_and_its_own_keys() {
        let failure = SmtpAuthFailure {
            route: "billing".into(),
            queues: vec!["billing".into()],
            hint: "mailbox[0].smtp.username and mailbox[0].smtp.password".into(),
            since: Utc.timestamp_opt(0, 0).unwrap(),
            error: "535 5.7.8 no\x1b[2J".into(),
        };
        let said = refusal_warning(&failure);
        assert!(
            said.contains("for queue billing since 1970-01-01 00:00 UTC"),
            "{said}"
        );
        assert!(said.contains("fix mailbox[0].smtp.username and mailbox[0].smtp.password"));
        assert!(!said.contains("[smtp]") && !said.contains('\x1b'), "{said}");
    }
}
