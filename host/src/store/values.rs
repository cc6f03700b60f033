//! Conversions between a field's JSON value and its SQLite column value.

use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Number, Value};

use super::schema::{Field, FieldKind};

/// The column value stored for a field's normalized JSON value.
pub fn to_sql(field: &Field, v: &Value) -> SqlValue {
    if field.is_multiple() {
        return match v {
            Value::Array(_) => SqlValue::Text(v.to_string()),
            Value::Null => SqlValue::Text("[]".into()),
            Value::String(s) if s.is_empty() => SqlValue::Text("[]".into()),
            other => SqlValue::Text(Value::Array(vec![other.clone()]).to_string()),
        };
    }
    match (&field.kind, v) {
        (FieldKind::Json(_), Value::Null) => SqlValue::Null,
        (FieldKind::Json(_), v) => SqlValue::Text(v.to_string()),
        (FieldKind::GeoPoint(_), v) => {
            let (lon, lat) = crate::records::geo_point(v);
            SqlValue::Text(crate::records::geo_value(lon, lat).to_string())
        }
        (_, Value::Null) => match &field.kind {
            FieldKind::Number(_) | FieldKind::Bool(_) => SqlValue::Integer(0),
            _ => SqlValue::Text(String::new()),
        },
        (_, Value::Bool(b)) => SqlValue::Integer(*b as i64),
        (_, Value::Number(n)) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        (_, Value::String(s)) => SqlValue::Text(s.clone()),
        (_, other) => SqlValue::Text(other.to_string()),
    }
}

/// The JSON value served for a field's column value.
pub fn from_sql(field: &Field, v: ValueRef<'_>) -> Value {
    if field.is_multiple() {
        return match v {
            ValueRef::Text(t) => serde_json::from_slice(t).unwrap_or_else(|_| Value::Array(vec![])),
            _ => Value::Array(vec![]),
        };
    }
    match &field.kind {
        FieldKind::Number(_) => match v {
            ValueRef::Integer(i) => Value::Number(i.into()),
            ValueRef::Real(f) => float(f),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .map(float)
                .unwrap_or(Value::Number(0.into())),
            _ => Value::Number(0.into()),
        },
        FieldKind::Bool(_) => match v {
            ValueRef::Integer(i) => Value::Bool(i != 0),
            ValueRef::Real(f) => Value::Bool(f != 0.0),
            ValueRef::Text(t) => Value::Bool(matches!(t, b"1" | b"true" | b"TRUE")),
            _ => Value::Bool(false),
        },
        FieldKind::Json(_) => match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Number(i.into()),
            ValueRef::Real(f) => float(f),
            ValueRef::Text(t) | ValueRef::Blob(t) => serde_json::from_slice(t)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(t).into_owned())),
        },
        FieldKind::GeoPoint(_) => {
            let raw = match v {
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    serde_json::from_slice(t).unwrap_or(Value::Null)
                }
                _ => Value::Null,
            };
            let (lon, lat) = crate::records::geo_point(&raw);
            crate::records::geo_value(lon, lat)
        }
        _ => match v {
            ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Integer(i) => Value::String(i.to_string()),
            ValueRef::Real(f) => Value::String(f.to_string()),
            _ => Value::String(String::new()),
        },
    }
}

/// A float as JSON, written as an integer when it is one (PocketBase serves `5`, not `5.0`).
fn float(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Value::Number((f as i64).into())
    } else {
        Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// A filter parameter as a SQLite value.
pub fn param(p: &crate::filter::SqlParam) -> SqlValue {
    use crate::filter::SqlParam;
    match p {
        SqlParam::Null => SqlValue::Null,
        SqlParam::Int(i) => SqlValue::Integer(*i),
        SqlParam::Real(f) => SqlValue::Real(*f),
        SqlParam::Text(s) => SqlValue::Text(s.clone()),
    }
}
