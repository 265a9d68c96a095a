//! IMAP command plumbing: a timeout wrapper for every network step, and a
//! command runner that reads responses up to the tagged completion and
//! insists that it is `OK`. async-imap's `uid_fetch`, `uid_search`,
//! `uid_store`, `uid_expunge` and `capabilities` end their response stream at
//! the tagged line without looking at its status, and end it quietly when
//! the connection closes; so a `NO`, a `BAD` or a dropped connection would
//! look like "no data". Those commands go through [`run_checked`] instead.
//! This file owns no mailbox logic and must not decide what a failure means.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use async_imap::imap_proto::{Capability, Response, Status};

use super::connect::ImapSession;

/// The server answered a command with `NO` or `BAD`: the connection is fine,
/// the request was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub command: String,
    pub reply: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server refused `{}`: {}", self.command, self.reply)
    }
}

impl std::error::Error for Refused {}

/// True when `err` is (or wraps) a [`Refused`].
pub(crate) fn is_refusal(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.is::<Refused>())
}

/// Runs `fut` with a deadline; the error says what timed out.
pub(crate) async fn within<T, E>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T>
where
    E: Into<anyhow::Error>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result
            .map_err(Into::into)
            .with_context(|| format!("while {what}")),
        Err(_) => Err(anyhow!(
            "no answer within {} s while {what}",
            limit.as_secs_f32()
        )),
    }
}

/// Maps an async-imap error of `command`, turning `NO`/`BAD` into [`Refused`].
pub(crate) fn imap_error(command: &str, err: async_imap::error::Error) -> anyhow::Error {
    use async_imap::error::Error;
    match err {
        Error::No(reply) | Error::Bad(reply) => Refused {
            command: command.to_string(),
            reply,
        }
        .into(),
        other => anyhow::Error::new(other).context(format!("while running `{command}`")),
    }
}

/// Sends `command`, hands every untagged response to `on_data` and returns
/// once the tagged completion arrives; `NO`/`BAD` become [`Refused`], a
/// closed connection an error. `limit` bounds the send and each response
/// (so a long FETCH is fine as long as data keeps coming).
pub(crate) async fn run_checked(
    session: &mut ImapSession,
    limit: Duration,
    command: &str,
    mut on_data: impl FnMut(&Response<'_>),
) -> anyhow::Result<()> {
    let what = format!("sending `{command}`");
    let tag = within(limit, &what, session.run_command(command)).await?;
    let what = format!("waiting for the answer to `{command}`");
    loop {
        let Some(response) = within(limit, &what, session.read_response()).await? else {
            return Err(anyhow!(
                "the server closed the connection during `{command}`"
            ));
        };
        match response.parsed() {
            Response::Done {
                tag: done,
                status,
                outcome,
            } if *done == tag => {
                let text = outcome.information.as_deref().unwrap_or("").to_string();
                return match status {
                    Status::Ok => Ok(()),
                    Status::No | Status::Bad => Err(Refused {
                        command: command.to_string(),
                        reply: format!("{status:?} {text}"),
                    }
                    .into()),
                    other => Err(anyhow!("unexpected `{other:?} {text}` to `{command}`")),
                };
            }
            Response::Data {
                status: Status::Bye,
                outcome,
            } if !command.eq_ignore_ascii_case("LOGOUT") => {
                let text = outcome.information.as_deref().unwrap_or("");
                return Err(anyhow!("the server said BYE ({text}) during `{command}`"));
            }
            parsed => on_data(parsed),
        }
    }
}

/// What the selected server can do, as far as this module cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Caps {
    pub idle: bool,
    pub move_: bool,
    pub uidplus: bool,
}

/// Asks `CAPABILITY` (after LOGIN: servers often advertise more then).
pub(crate) async fn capabilities(
    session: &mut ImapSession,
    limit: Duration,
) -> anyhow::Result<Caps> {
    let mut names = BTreeSet::new();
    run_checked(session, limit, "CAPABILITY", |r| {
        if let Response::Capabilities(list) = r {
            for cap in list {
                if let Capability::Atom(name) = cap {
                    names.insert(name.to_ascii_uppercase());
                }
            }
        }
    })
    .await?;
    Ok(Caps {
        idle: names.contains("IDLE"),
        move_: names.contains("MOVE"),
        uidplus: names.contains("UIDPLUS"),
    })
}

/// Formats UIDs as a compact IMAP set: `[1, 2, 3, 7]` → `1:3,7`.
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut sorted: Vec<u32> = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut iter = sorted.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end.saturating_add(1))) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[3, 1, 2, 7, 9, 8, 8]), "1:3,7:9");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }

    #[test]
    fn refusals_are_recognised_through_context() {
        let err = anyhow::Error::new(Refused {
            command: "UID MOVE 1 Done".into(),
            reply: "No mailbox".into(),
        })
        .context("while marking");
        assert!(is_refusal(&err));
        assert!(!is_refusal(&anyhow!("connection reset")));
    }
}
