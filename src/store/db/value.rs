//! What crosses the SQL boundary in both directions, whichever backend:
//! parameters become a [`Value`] (integers, reals, text, bytes, NULL) and
//! columns are read back through [`Column`]. Timestamps are text in both
//! databases, written in rusqlite's own format so that existing SQLite
//! rows and new ones compare alike. Owns no connection.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

/// One bound parameter.
#[derive(Debug, Clone)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(Cow<'a, str>),
    Blob(Cow<'a, [u8]>),
}

/// Anything that binds as a parameter.
pub trait Param {
    fn value(&self) -> Value<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> Value<'_> {
                Value::Int(*self as i64)
            }
        }
    )*};
}
int_param!(i64, i32, u32, u16, u8, usize, u64);

impl Param for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}

impl Param for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}

impl Param for str {
    fn value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self))
    }
}

impl Param for String {
    fn value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self))
    }
}

impl Param for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(Cow::Borrowed(self))
    }
}

impl Param for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(Cow::Borrowed(self))
    }
}

impl<const N: usize> Param for [u8; N] {
    fn value(&self) -> Value<'_> {
        Value::Blob(Cow::Borrowed(self))
    }
}

impl Param for DateTime<Utc> {
    fn value(&self) -> Value<'_> {
        Value::Text(Cow::Owned(self.format("%F %T%.f%:z").to_string()))
    }
}

impl Param for crate::domain::Address {
    fn value(&self) -> Value<'_> {
        Value::Text(Cow::Borrowed(self.as_str()))
    }
}

impl Param for Value<'_> {
    fn value(&self) -> Value<'_> {
        self.clone()
    }
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}

impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value<'_> {
        match self {
            Some(v) => v.value(),
            None => Value::Null,
        }
    }
}

/// Values that outlive their borrow, to cross to a connection's thread.
pub fn owned(values: Vec<Value<'_>>) -> Vec<Value<'static>> {
    values
        .into_iter()
        .map(|v| match v {
            Value::Null => Value::Null,
            Value::Int(i) => Value::Int(i),
            Value::Real(f) => Value::Real(f),
            Value::Text(t) => Value::Text(Cow::Owned(t.into_owned())),
            Value::Blob(b) => Value::Blob(Cow::Owned(b.into_owned())),
        })
        .collect()
}

/// A list of parameters: `params![a, b]`, like rusqlite's.
#[macro_export]
macro_rules! sql_params {
    () => { &[] as &[&dyn $crate::store::db::Param] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::store::db::Param),+] as &[&dyn $crate::store::db::Param] };
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// A column type readable from both backends.
pub trait Column: rusqlite::types::FromSql + Sized {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self>;
}

fn pg_int(row: &postgres::Row, idx: usize) -> anyhow::Result<Option<i64>> {
    use postgres::types::Type;
    let ty = row.columns()[idx].type_().clone();
    Ok(match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(idx)?,
        Type::INT4 => row.try_get::<_, Option<i32>>(idx)?.map(i64::from),
        Type::INT2 => row.try_get::<_, Option<i16>>(idx)?.map(i64::from),
        Type::BOOL => row.try_get::<_, Option<bool>>(idx)?.map(i64::from),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(idx)?.map(|f| f as i64),
        other => anyhow::bail!("column {idx} is {other}, not an integer"),
    })
}

fn required<T>(value: Option<T>, idx: usize) -> anyhow::Result<T> {
    value.ok_or_else(|| anyhow::anyhow!("column {idx} is NULL"))
}

macro_rules! int_column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
                let v = required(pg_int(row, idx)?, idx)?;
                Ok(<$t>::try_from(v)?)
            }
        }
        impl Column for Option<$t> {
            fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
                pg_int(row, idx)?.map(<$t>::try_from).transpose().map_err(Into::into)
            }
        }
    )*};
}
int_column!(i64, i32, u32, u16, u8);

impl Column for bool {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        Ok(required(pg_int(row, idx)?, idx)? != 0)
    }
}

impl Column for Option<bool> {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        Ok(pg_int(row, idx)?.map(|v| v != 0))
    }
}

fn pg_real(row: &postgres::Row, idx: usize) -> anyhow::Result<Option<f64>> {
    use postgres::types::Type;
    match *row.columns()[idx].type_() {
        Type::FLOAT8 => Ok(row.try_get::<_, Option<f64>>(idx)?),
        Type::FLOAT4 => Ok(row.try_get::<_, Option<f32>>(idx)?.map(f64::from)),
        _ => Ok(pg_int(row, idx)?.map(|i| i as f64)),
    }
}

impl Column for f64 {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        required(pg_real(row, idx)?, idx)
    }
}

impl Column for Option<f64> {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        pg_real(row, idx)
    }
}

impl Column for String {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        required(row.try_get::<_, Option<String>>(idx)?, idx)
    }
}

impl Column for Option<String> {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        Ok(row.try_get::<_, Option<String>>(idx)?)
    }
}

impl Column for Vec<u8> {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        required(row.try_get::<_, Option<Vec<u8>>>(idx)?, idx)
    }
}

impl Column for Option<Vec<u8>> {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        Ok(row.try_get::<_, Option<Vec<u8>>>(idx)?)
    }
}

/// Parses a stored timestamp as rusqlite does (RFC 3339 with a `T` or a
/// space), so both backends read what either wrote.
fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    let fmt = if text.as_bytes().get(10) == Some(&b'T') {
        "%FT%T%.f%#z"
    } else {
        "%F %T%.f%#z"
    };
    if let Ok(t) = DateTime::parse_from_str(text, fmt) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%F %T%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%FT%T%.f"))
        .map_err(|err| anyhow::anyhow!("the stored time {text:?} does not parse: {err}"))?;
    Ok(naive.and_utc())
}

impl Column for DateTime<Utc> {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        parse_time(&String::from_pg(row, idx)?)
    }
}

impl Column for Option<DateTime<Utc>> {
    fn from_pg(row: &postgres::Row, idx: usize) -> anyhow::Result<Self> {
        Option::<String>::from_pg(row, idx)?
            .map(|t| parse_time(&t))
            .transpose()
    }
}

/// `text` with any NUL as U+FFFD; borrowed (no copy) in the usual case
/// of none, as every text parameter of every statement passes here.
fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Binds a [`Value`] to whatever type PostgreSQL inferred for the
/// parameter, so one SQL text serves both backends (SQLite is untyped).
impl postgres::types::ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match (self, ty) {
            (Value::Null, _) => Ok(IsNull::Yes),
            (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Int(i), &Type::TEXT | &Type::VARCHAR) => i.to_string().to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT8) => f.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            // PostgreSQL text cannot hold NUL (SQLite's can): a mail's
            // stray NUL is stored as U+FFFD rather than failing the mail.
            (Value::Text(s), &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME) => {
                without_nul(s).to_sql(ty, out)
            }
            (Value::Text(s), &Type::UNKNOWN) => without_nul(s).to_sql(&Type::TEXT, out),
            (Value::Blob(b), &Type::BYTEA) => b.as_ref().to_sql(ty, out),
            (value, ty) => Err(format!("cannot bind {value:?} as {ty}").into()),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back_whichever_way_they_were_written() {
        let t = DateTime::parse_from_rfc3339("2026-12-05T13:40:00.25Z")
            .unwrap()
            .with_timezone(&Utc);
        let Value::Text(written) = t.value() else {
            panic!("a time binds as text")
        };
        assert_eq!(written, "2026-12-05 13:40:00.250+00:00");
        assert_eq!(parse_time(&written).unwrap(), t);
        assert_eq!(parse_time("2026-12-05T13:40:00.25Z").unwrap(), t);
        assert_eq!(parse_time("2026-12-05 13:40:00.25").unwrap(), t);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn nul_becomes_a_replacement_character_and_clean_text_is_not_copied() {
        assert_eq!(without_nul("a\0b"), "a\u{fffd}b");
        assert!(matches!(without_nul("plain"), Cow::Borrowed("plain")));
    }
}
