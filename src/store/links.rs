//! Private links: revoking and re-issuing them (`postdesk tokens rotate N`).
//! A ticket's confirmation carries both its ticket link and its
//! requester's list link, so a leaked mail leaks both: rotation kills
//! every live link of the ticket and of its requester and issues one fresh
//! link of each, in one transaction. Only the tokens' hashes are stored;
//! the clear tokens are returned once, to be printed, and never kept.

use super::db::OptionalExtension;
use crate::sql_params as params;
use chrono::{DateTime, Utc};

use super::Store;
use crate::domain::TicketNumber;
use crate::tokens::{link_key, link_token};

/// The condition on `access_tokens k` that `?1` is the stored key
/// (`tokens::link_key`) of a live link of `scope` (`"ticket"` or
/// `"requester"`). Every read that opens something by a link says it
/// with this, so that what a live link is is written once.
macro_rules! live_link {
    ($scope:literal) => {
        concat!(
            "k.token_hash = ?1 AND k.scope = '",
            $scope,
            "' AND k.revoked_at IS NULL"
        )
    };
}
pub(super) use live_link;

/// The requester a live requester link names (`?1` the link's key), as a
/// scalar subquery: NULL for an unknown or revoked link.
macro_rules! link_requester {
    () => {
        concat!(
            "(SELECT k.requester FROM access_tokens k WHERE ",
            crate::store::links::live_link!("requester"),
            ")"
        )
    };
}
pub(super) use link_requester;

/// The fresh links of a rotated ticket, tokens in clear.
#[derive(Debug, Clone)]
pub struct RotatedLinks {
    pub ticket: TicketNumber,
    pub requester: String,
    /// For `public_url/t/TOKEN`.
    pub ticket_token: String,
    /// For `public_url/r/TOKEN`.
    pub requester_token: String,
    /// How many live links stopped working.
    pub revoked: usize,
}

impl Store {
    /// Revokes every live link to ticket `number` and to its requester's
    /// list, and issues a new one of each. `None` if there is no such
    /// ticket.
    pub fn rotate_ticket_links(
        &self,
        number: TicketNumber,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<RotatedLinks>> {
        let ticket_token = link_token(now)?;
        let requester_token = link_token(now)?;
        let conn = self.write()?;
        let tx = conn.begin()?;
        let requester: Option<String> = tx
            .query_row(
                "SELECT requester FROM tickets WHERE number = ?1",
                [number.0],
                |r| r.get(0),
            )
            .optional()?;
        let Some(requester) = requester else {
            return Ok(None);
        };
        let revoked = tx.execute(
            "UPDATE access_tokens SET revoked_at = ?3
             WHERE revoked_at IS NULL
               AND ((scope = 'ticket' AND ticket_number = ?1)
                 OR (scope = 'requester' AND requester = ?2))",
            params![number.0, requester, now],
        )?;
        tx.execute(
            "INSERT INTO access_tokens (token_hash, scope, ticket_number, requester, created_at)
             VALUES (?1, 'ticket', ?2, NULL, ?3)",
            params![link_key(&ticket_token), number.0, now],
        )?;
        tx.execute(
            "INSERT INTO access_tokens (token_hash, scope, ticket_number, requester, created_at)
             VALUES (?1, 'requester', NULL, ?2, ?3)",
            params![link_key(&requester_token), requester, now],
        )?;
        tx.commit()?;
        Ok(Some(RotatedLinks {
            ticket: number,
            requester,
            ticket_token,
            requester_token,
            revoked,
        }))
    }
}
