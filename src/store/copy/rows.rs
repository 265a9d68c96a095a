//! `copy`'s pure row work: a SQLite value as the target column takes it
//! (PostgreSQL's text holds no NUL and only UTF-8), the checksum over the
//! raw mails, and where a table's columns sit for the per-row work. No I/O.

use std::borrow::Cow;

use anyhow::bail;
use postgres::types::Type;
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};

use crate::store::db::Value;

/// SHA-256 over each raw mail's id (8 bytes, big-endian) and the SHA-256
/// of its bytes, in id order: a moved, changed, lost or extra mail shows.
#[derive(Default)]
pub(super) struct RawChecksum(Sha256);

impl RawChecksum {
    pub(super) fn add(&mut self, id: i64, mail_sha256: &[u8]) {
        self.0.update(id.to_be_bytes());
        self.0.update(mail_sha256);
    }

    pub(super) fn hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Where the per-table work finds its columns in a row.
pub(super) struct RowHooks {
    pub(super) raw_mail: Option<(usize, usize)>,
    pub(super) outbox: Option<OutboxColumns>,
}

#[derive(Clone, Copy)]
pub(super) struct OutboxColumns {
    pub(super) message_id: usize,
    pub(super) status: usize,
    pub(super) sent_at: usize,
    pub(super) attempts: usize,
    /// The daemon that claimed the row (from schema V11 on).
    pub(super) claimed_by: Option<usize>,
}

impl RowHooks {
    pub(super) fn new(table: &str, columns: &[String]) -> RowHooks {
        let at = |name: &str| columns.iter().position(|c| c == name);
        let raw_mail = (table == "raw_mails")
            .then(|| at("id").zip(at("bytes")))
            .flatten();
        let outbox = (table == "outbox")
            .then(|| {
                Some(OutboxColumns {
                    message_id: at("message_id")?,
                    status: at("status")?,
                    sent_at: at("sent_at")?,
                    attempts: at("attempts")?,
                    claimed_by: at("claimed_by"),
                })
            })
            .flatten();
        RowHooks { raw_mail, outbox }
    }
}

/// A SQLite value as the target column's type takes it.
pub(super) fn convert<'r>(
    value: ValueRef<'r>,
    ty: &Type,
    repaired: &mut u64,
) -> anyhow::Result<Value<'r>> {
    let texty = matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR);
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) if *ty != Type::BYTEA => Value::Int(i),
        ValueRef::Real(f) if matches!(*ty, Type::FLOAT8 | Type::FLOAT4) => Value::Real(f),
        ValueRef::Text(b) | ValueRef::Blob(b) if *ty == Type::BYTEA => {
            Value::Blob(Cow::Borrowed(b))
        }
        ValueRef::Text(b) | ValueRef::Blob(b) if texty => Value::Text(text(b, repaired)),
        other => bail!(
            "a {:?} value cannot go into a {ty} column",
            other.data_type()
        ),
    })
}

/// Text PostgreSQL can store: no NUL character, valid UTF-8.
pub(super) fn text<'r>(bytes: &'r [u8], repaired: &mut u64) -> Cow<'r, str> {
    let text = String::from_utf8_lossy(bytes);
    let lossy = matches!(text, Cow::Owned(_));
    if text.contains('\0') {
        *repaired += 1;
        return Cow::Owned(text.replace('\0', "\u{FFFD}"));
    }
    if lossy {
        *repaired += 1;
    }
    text
}
