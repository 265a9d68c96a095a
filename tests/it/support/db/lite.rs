//! SQLite behind the tests' database seam: one connection per call.

use std::path::Path;
use std::time::Duration;

use super::Value;

fn open(path: &Path) -> Result<rusqlite::Connection, String> {
    let conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    // The daemon may be writing: wait for its lock rather than fail.
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

fn param(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match value {
        Value::Null => V::Null,
        Value::Int(n) => V::Integer(*n),
        Value::Real(x) => V::Real(*x),
        Value::Text(s) => V::Text(s.clone()),
        Value::Bytes(b) => V::Blob(b.clone()),
    }
}

pub fn rows(path: &Path, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, String> {
    use rusqlite::types::ValueRef;
    let conn = open(path)?;
    let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
    let columns = stmt.column_count();
    let params = rusqlite::params_from_iter(params.iter().map(param));
    let mut rows = stmt.query(params).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i).map_err(|e| e.to_string())? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::Int(n),
                ValueRef::Real(x) => Value::Real(x),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            });
        }
        out.push(values);
    }
    Ok(out)
}

pub fn execute(path: &Path, sql: &str, params: &[Value]) -> Result<u64, String> {
    let conn = open(path)?;
    let params = rusqlite::params_from_iter(params.iter().map(param));
    let changed = conn.execute(sql, params).map_err(|e| e.to_string())?;
    Ok(changed as u64)
}
