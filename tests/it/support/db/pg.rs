//! PostgreSQL behind the tests' database seam: one connection per call,
//! made off the tests' tokio runtime; parameters converted to the types
//! the server inferred for their placeholders.

use std::time::Duration;

use postgres::types::{ToSql, Type};

use super::Value;

pub fn connect(url: &str) -> Result<postgres::Client, postgres::Error> {
    let mut config: postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(10));
    config.connect(postgres::NoTls)
}

/// Runs `f` on a thread of its own: the blocking `postgres` client starts
/// a runtime, which panics inside the tests' tokio runtime.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// `value` as the type PostgreSQL inferred for its placeholder.
fn param(value: &Value, ty: &Type) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    let int = |v: &Value| match v {
        Value::Int(n) => Ok(*n),
        other => Err(format!("a {ty} parameter cannot take {other:?}")),
    };
    let narrow = |_| format!("{value:?} does not fit the {ty} parameter");
    Ok(match (value, ty) {
        (Value::Null, _) => Box::new(Option::<String>::None),
        (_, &Type::INT8) => Box::new(int(value)?),
        (_, &Type::INT4) => Box::new(i32::try_from(int(value)?).map_err(narrow)?),
        (_, &Type::INT2) => Box::new(i16::try_from(int(value)?).map_err(narrow)?),
        (_, &Type::BOOL) => Box::new(int(value)? != 0),
        (Value::Real(x), _) => Box::new(*x),
        (Value::Bytes(b), _) => Box::new(b.clone()),
        (v, _) => Box::new(v.text()),
    })
}

/// Column `i` of `row`, by its PostgreSQL type.
fn value(row: &postgres::Row, i: usize) -> Result<Value, String> {
    let ty = row.columns()[i].type_().clone();
    let e = |e: postgres::Error| format!("column {i} ({ty}): {e}");
    let v = match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(e)?.map(Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(e)?
            .map(|n| Value::Int(n.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(e)?
            .map(|n| Value::Int(n.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map_err(e)?
            .map(|b| Value::Int(b.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)
            .map_err(e)?
            .map(Value::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)
            .map_err(e)?
            .map(|x| Value::Real(x.into())),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(e)?
            .map(Value::Bytes),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<String>>(i)
            .map_err(e)?
            .map(Value::Text),
        other => {
            return Err(format!(
                "column {i} is {other}: CAST it AS TEXT or BIGINT in the test's query"
            ));
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

pub fn rows(url: &str, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, String> {
    let mut client = connect(url).map_err(|e| e.to_string())?;
    let stmt = client.prepare(sql).map_err(|e| e.to_string())?;
    let boxed = typed(&stmt, params)?;
    let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref() as _).collect();
    let rows = client.query(&stmt, &refs).map_err(|e| e.to_string())?;
    rows.iter()
        .map(|row| (0..row.len()).map(|i| value(row, i)).collect())
        .collect()
}

pub fn execute(url: &str, sql: &str, params: &[Value]) -> Result<u64, String> {
    let mut client = connect(url).map_err(|e| e.to_string())?;
    let stmt = client.prepare(sql).map_err(|e| e.to_string())?;
    let boxed = typed(&stmt, params)?;
    let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref() as _).collect();
    client.execute(&stmt, &refs).map_err(|e| e.to_string())
}

fn typed(
    stmt: &postgres::Statement,
    params: &[Value],
) -> Result<Vec<Box<dyn ToSql + Sync + Send>>, String> {
    if stmt.params().len() != params.len() {
        return Err(format!(
            "{} placeholders, {} parameters",
            stmt.params().len(),
            params.len()
        ));
    }
    params
        .iter()
        .zip(stmt.params())
        .map(|(v, ty)| param(v, ty))
        .collect()
}
