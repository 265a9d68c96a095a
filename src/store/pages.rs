//! Page reads: what the status page needs beyond `ticket_page` and the
//! ticket lists: a ticket opened from a requester's list, attachment bytes
//! checked against the link that asks for them, one ticket in full for
//! agents, the counts behind `/metrics` and the outbox backlog behind
//! `/healthz`.
//! Reads only, on reader connections. A customer-facing read must never
//! return another ticket's data, nor a message `customer_sees` refuses
//! (a note, automatic mail, a stranger's mail threaded onto the ticket).

use std::collections::BTreeMap;

use super::db::{OptionalExtension, Tx};
use crate::sql_params as params;
use chrono::{DateTime, Utc};

use super::links::link_requester;
use super::ticket_lists::counts_by_status;
use super::tickets::{SENDER_TAKES_PART, customer_sees, detail, snapshot, ticket_of_link};
use super::{Store, TicketDetail};
use crate::domain::{Status, TicketNumber};
use crate::ingest::span::{self, SpanEncoding};

/// One ticket as agents see it: every message, plus who holds it.
#[derive(Debug, Clone)]
pub struct AgentTicket {
    pub detail: TicketDetail,
    pub assignee: Option<String>,
}

/// An attachment's bytes, ready to download.
#[derive(Debug, Clone)]
pub struct AttachmentFile {
    pub filename: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// The counts behind `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    /// Every mail stored, quarantined and ignored ones included.
    pub mails_ingested: i64,
    /// Faults only: mail that could not be processed.
    pub mails_quarantined: i64,
    /// Machine mail that answers no ticket, kept apart.
    pub mails_ignored: i64,
    /// Every status, zero where there is none.
    pub tickets_by_status: BTreeMap<Status, i64>,
    pub outbox_pending: i64,
    pub outbox_failed: i64,
}

impl Store {
    /// A ticket opened from a requester's list: only what `customer_sees`,
    /// and only if the ticket is that requester's.
    pub fn requester_ticket(
        &self,
        token: &str,
        number: TicketNumber,
    ) -> anyhow::Result<Option<TicketDetail>> {
        self.read(|c| {
            snapshot(c, || {
                if !owns_ticket(c, token, number)? {
                    return Ok(None);
                }
                detail(c, number, true)
            })
        })
    }

    /// An attachment through a ticket link: only one on a message of that
    /// link's ticket that the customer's page shows.
    pub fn ticket_attachment(
        &self,
        token: &str,
        attachment: i64,
    ) -> anyhow::Result<Option<AttachmentFile>> {
        let key = crate::tokens::link_key(token);
        self.read(|c| match ticket_of_link(c, &key)? {
            Some(number) => attachment_of(c, number, attachment, true),
            None => Ok(None),
        })
    }

    /// An attachment through a requester link: only one on a message the
    /// customer's page shows, of a ticket of that requester.
    pub fn requester_attachment(
        &self,
        token: &str,
        number: TicketNumber,
        attachment: i64,
    ) -> anyhow::Result<Option<AttachmentFile>> {
        self.read(|c| {
            if !owns_ticket(c, token, number)? {
                return Ok(None);
            }
            attachment_of(c, number, attachment, true)
        })
    }

    /// One ticket in full for agents: notes, auto-replies, bounces and our
    /// own mails included.
    pub fn agent_ticket(&self, number: TicketNumber) -> anyhow::Result<Option<AgentTicket>> {
        let Some(detail) = self.ticket_detail(number)? else {
            return Ok(None);
        };
        let assignee = self.read(|c| {
            Ok(c.query_row(
                "SELECT assignee FROM tickets WHERE number = ?1",
                [number.0],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
        })?;
        Ok(Some(AgentTicket { detail, assignee }))
    }

    /// Any attachment of a ticket, for agents.
    pub fn agent_attachment(
        &self,
        number: TicketNumber,
        attachment: i64,
    ) -> anyhow::Result<Option<AttachmentFile>> {
        self.read(|c| attachment_of(c, number, attachment, false))
    }

    /// Outgoing mails not yet sent (or being sent), and when the oldest of
    /// them was queued: for `/healthz`. Failed ones are not waiting.
    pub fn outbox_backlog(&self) -> anyhow::Result<(i64, Option<DateTime<Utc>>)> {
        self.read(|c| {
            c.query_row(
                "SELECT count(*), min(created_at) FROM outbox
                 WHERE status IN ('pending', 'sending')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
    }

    /// Counts for `/metrics`, in one read.
    pub fn store_metrics(&self) -> anyhow::Result<StoreMetrics> {
        self.read(|c| {
            let mails_ingested = c.query_row("SELECT count(*) FROM raw_mails", [], |r| r.get(0))?;
            let (mails_quarantined, mails_ignored) = c.query_row(
                "SELECT count(*) FILTER (WHERE kind = 'fault'),
                        count(*) FILTER (WHERE kind = 'ignored') FROM quarantine",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (outbox_pending, outbox_failed) = c.query_row(
                "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')),
                        count(*) FILTER (WHERE status = 'failed') FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(StoreMetrics {
                mails_ingested,
                mails_quarantined,
                mails_ignored,
                tickets_by_status: counts_by_status(c, None)?,
                outbox_pending,
                outbox_failed,
            })
        })
    }
}

/// Whether a live requester token names the requester of ticket `number`.
fn owns_ticket(c: &Tx, token: &str, number: TicketNumber) -> anyhow::Result<bool> {
    // One statement, the link read inside it (on PostgreSQL each is a
    // round trip); `=` compares the addresses exactly, as Rust's `==` did.
    let owned = c
        .prepare_cached(concat!(
            "SELECT 1 FROM tickets t WHERE t.number = ?2 AND t.requester = ",
            link_requester!()
        ))?
        .query_row(params![crate::tokens::link_key(token), number.0], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?;
    Ok(owned.is_some())
}

/// An attachment of ticket `number`; with `customer_view`, only one on a
/// message the customer's page shows. Its bytes come from its span of the
/// raw mail, decoded, or from its decoded copy (see migration V8).
fn attachment_of(
    c: &Tx,
    number: TicketNumber,
    attachment: i64,
    customer_view: bool,
) -> anyhow::Result<Option<AttachmentFile>> {
    let sql = format!(
        "SELECT a.filename, a.media_type, m.kind, {SENDER_TAKES_PART}, a.encoding, a.sha256,
           CASE WHEN a.encoding IS NULL
             THEN (SELECT b.bytes FROM blobs b WHERE b.sha256 = a.sha256)
             ELSE (SELECT substr(r.bytes, CAST(a.raw_offset + 1 AS INTEGER),
                                 CAST(a.raw_length AS INTEGER))
                   FROM raw_mails r WHERE r.id = m.raw_mail_id)
           END
         FROM attachments a
         JOIN messages m ON m.id = a.message_id
         WHERE a.id = ?1 AND m.ticket_number = ?2"
    );
    let found = c
        .query_row(&sql, params![attachment, number.0], |r| {
            let kind: String = r.get(2)?;
            let shown = customer_sees(&kind, r.get(3)?);
            let encoding: Option<String> = r.get(4)?;
            let stored: Option<Vec<u8>> = r.get(6)?;
            let file = (r.get::<_, String>(0)?, r.get::<_, String>(1)?);
            Ok((file, (encoding, r.get::<_, String>(5)?), stored, shown))
        })
        .optional()?;
    let Some(((filename, media_type), (encoding, sha256), stored, shown)) = found else {
        return Ok(None);
    };
    if customer_view && !shown {
        return Ok(None);
    }
    let stored =
        stored.ok_or_else(|| anyhow::anyhow!("attachment {attachment} has no stored bytes"))?;
    let bytes = match encoding {
        None => stored,
        Some(name) => {
            let encoding = SpanEncoding::parse(&name).ok_or_else(|| {
                anyhow::anyhow!("attachment {attachment} has an unknown encoding {name:?}")
            })?;
            let bytes = span::decode(&stored, encoding).ok_or_else(|| {
                anyhow::anyhow!("attachment {attachment}'s span of its raw mail does not decode")
            })?;
            // What was checked at ingest, checked again: a download is the
            // file that arrived or an error, never other bytes.
            if crate::tokens::sha256_hex(&bytes) != sha256 {
                anyhow::bail!("attachment {attachment}'s span of its raw mail is not the file");
            }
            bytes
        }
    };
    Ok(Some(AttachmentFile {
        filename,
        media_type,
        bytes,
    }))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::ingest::Pipeline;
    use crate::settings::Settings;
    use crate::store::MailSource;

    /// A PDF sent base64 (kept in the raw mail only) and a Latin-1 text
    /// file (converted by the parser, so kept decoded as before).
    fn mail(pdf: &[u8]) -> Vec<u8> {
        let b64 = base64(pdf);
        format!(
            "From: ann@customer.test\r\nTo: tickets@support.test\r\nSubject: Files\r\n\
             Message-ID: <files@customer.test>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n\
             --b\r\nContent-Type: application/pdf\r\n\
             Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n\
             --b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
             Content-Disposition: attachment; filename=\"n.txt\"\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9\r\n--b--\r\n"
        )
        .into_bytes()
    }

    fn base64(bytes: &[u8]) -> String {
        use base64::Engine;
        let flat = base64::engine::general_purpose::STANDARD.encode(bytes);
        let lines: Vec<&str> = flat
            .as_bytes()
            .chunks(76)
            .map(|line| std::str::from_utf8(line).unwrap())
            .collect();
        lines.join("\r\n")
    }

    #[test]
    fn an_attachment_is_stored_once_and_downloads_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![(
            "POSTDESK__SUPPORT__ADDRESS".to_string(),
            "tickets@support.test".to_string(),
        )];
        let settings = Settings::load_with_env(None, env).unwrap();
        let db = dir.path().join("t.db");
        let store = Store::open(&db).unwrap();
        let pipeline = Pipeline::new(&settings, "unit-secret-unit-secret");
        let pdf: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 251) as u8).collect();
        store
            .ingest_mail(&pipeline, mail(&pdf), &MailSource::Pipe, Utc::now())
            .unwrap();

        let count =
            |sql: &str| -> i64 { store.read(|c| c.query_row(sql, [], |r| r.get(0))).unwrap() };
        // Only the converted text file has a decoded copy; the PDF's bytes
        // are in the raw mail alone.
        assert_eq!(count("SELECT count(*) FROM blobs"), 1);
        assert_eq!(count("SELECT max(size) FROM blobs"), "café".len() as i64);
        let ids: Vec<(i64, Option<String>)> = store
            .read(|c| {
                c.query_map(
                    "SELECT id, encoding FROM attachments ORDER BY id",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?
                .collect()
            })
            .unwrap();
        assert_eq!(ids[0].1.as_deref(), Some("base64"));
        assert_eq!(ids[1].1, None);

        let number = TicketNumber(count("SELECT number FROM tickets"));
        let got = store.agent_attachment(number, ids[0].0).unwrap().unwrap();
        assert_eq!((got.filename.as_str(), got.bytes == pdf), ("a.pdf", true));
        let text = store.agent_attachment(number, ids[1].0).unwrap().unwrap();
        assert_eq!(text.bytes, "café".as_bytes());

        // A span that no longer decodes is an error, never other bytes.
        store
            .write()
            .unwrap()
            .execute(
                "UPDATE attachments SET raw_offset = 0 WHERE id = ?1",
                [ids[0].0],
            )
            .unwrap();
        assert!(store.agent_attachment(number, ids[0].0).is_err());

        // Erasing the sender leaves neither copy.
        store
            .erase_address("ann@customer.test", false, Utc::now())
            .unwrap();
        assert_eq!(count("SELECT count(*) FROM attachments"), 0);
        assert_eq!(count("SELECT count(*) FROM blobs"), 0);
        assert_eq!(count("SELECT count(*) FROM raw_mails"), 0);
    }
}
