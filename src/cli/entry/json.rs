//! Entries as JSON: the `--data FILE` batch format and `--output json`.
//!
//! Field names are the proto's (`spiffe_id`, `x509_svid_ttl`, ...); the
//! lowerCamelCase spellings of proto JSON (`spiffeId`) are accepted too, and
//! 64-bit integers may be numbers or strings, as proto JSON writes them.
//! Unknown fields are refused so that a typo does not silently drop a
//! setting. Selectors are `{"type": ..., "value": ...}` objects or
//! `"type:value"` strings.

use std::path::Path;

use serde_json::{Map, Value};

use crate::cli::CliError;
use crate::proto::admin;

/// Reads `{"entries": [...]}` from `path`.
pub(super) fn read_data_file(path: &Path) -> Result<Vec<admin::Entry>, CliError> {
    let bad = |m: String| CliError::BadInput(format!("--data: {m}"));
    let shown = path.display();
    let text = std::fs::read(path)
        .map_err(|e| CliError::bad_input_in(format_args!("--data: cannot read {shown}"), &e))?;
    let doc: Value = serde_json::from_slice(&text).map_err(|e| {
        CliError::bad_input_in(format_args!("--data: {shown} is not valid JSON"), &e)
    })?;
    let entries = doc
        .as_object()
        .and_then(|o| o.get("entries"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            bad(format!(
                "{} must hold {{\"entries\": [...]}}",
                path.display()
            ))
        })?;
    if entries.is_empty() {
        return Err(bad(format!("{} holds no entries", path.display())));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, v)| entry_from_json(v).map_err(|m| bad(format!("entries[{i}].{m}"))))
        .collect()
}

/// One entry object; the error starts with the field name.
pub(super) fn entry_from_json(v: &Value) -> Result<admin::Entry, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| "entry: must be a JSON object".to_string())?;
    let mut e = admin::Entry::default();
    for (key, value) in obj {
        let field = canonical(key);
        match field.as_str() {
            "id" => e.id = string(&field, value)?,
            "spiffe_id" => e.spiffe_id = string(&field, value)?,
            "parent_id" => e.parent_id = string(&field, value)?,
            "selectors" => e.selectors = selectors(value)?,
            "x509_svid_ttl" => e.x509_svid_ttl = int32(&field, value)?,
            "jwt_svid_ttl" => e.jwt_svid_ttl = int32(&field, value)?,
            "federates_with" => e.federates_with = strings(&field, value)?,
            "dns_names" => e.dns_names = strings(&field, value)?,
            "admin" => e.admin = boolean(&field, value)?,
            "downstream" => e.downstream = boolean(&field, value)?,
            "hint" => e.hint = string(&field, value)?,
            "expires_at" => e.expires_at = int64(&field, value)?,
            // Output-only fields: accepted so that `entry list --output
            // json` can be fed back, and ignored.
            "revision_number" | "created_at" => {}
            _ => return Err(format!("{key}: unknown field")),
        }
    }
    Ok(e)
}

/// The proto field name of a JSON key in either spelling.
fn canonical(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    // `x509SvidTtl` → `x509_svid_ttl`, `jwtSvidTtl` → `jwt_svid_ttl`.
    out
}

fn string(field: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(format!("{field}: must be a string")),
    }
}

fn strings(field: &str, v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, s)| string(&format!("{field}[{i}]"), s))
            .collect(),
        _ => Err(format!("{field}: must be an array of strings")),
    }
}

fn boolean(field: &str, v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        _ => Err(format!("{field}: must be true or false")),
    }
}

fn int64(field: &str, v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        Value::Null => Some(0),
        _ => None,
    }
    .ok_or_else(|| format!("{field}: must be an integer"))
}

fn int32(field: &str, v: &Value) -> Result<i32, String> {
    let n = int64(field, v)?;
    i32::try_from(n).map_err(|_| format!("{field}: {n} does not fit in 32 bits"))
}

fn selectors(v: &Value) -> Result<Vec<admin::Selector>, String> {
    let Value::Array(items) = v else {
        return Err("selectors: must be an array".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Value::String(text) => match text.split_once(':') {
                Some((t, v)) => Ok(admin::Selector {
                    r#type: t.into(),
                    value: v.into(),
                }),
                None => Err(format!(
                    "selectors[{i}]: {text:?} must have the form type:value"
                )),
            },
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| *k != "type" && *k != "value") {
                    return Err(format!("selectors[{i}].{k}: unknown field"));
                }
                let get = |k: &str| {
                    o.get(k)
                        .map(|v| string(&format!("selectors[{i}].{k}"), v))
                        .unwrap_or(Ok(String::new()))
                };
                Ok(admin::Selector {
                    r#type: get("type")?,
                    value: get("value")?,
                })
            }
            _ => Err(format!(
                "selectors[{i}]: must be {{\"type\": ..., \"value\": ...}} or \"type:value\""
            )),
        })
        .collect()
}

/// An entry as printed by `--output json` (the `--data` format).
pub(super) fn entry_json(e: &admin::Entry) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), e.id.clone().into());
    o.insert("spiffe_id".into(), e.spiffe_id.clone().into());
    o.insert("parent_id".into(), e.parent_id.clone().into());
    o.insert(
        "selectors".into(),
        e.selectors
            .iter()
            .map(|s| serde_json::json!({ "type": s.r#type, "value": s.value }))
            .collect::<Vec<_>>()
            .into(),
    );
    o.insert("x509_svid_ttl".into(), e.x509_svid_ttl.into());
    o.insert("jwt_svid_ttl".into(), e.jwt_svid_ttl.into());
    o.insert("federates_with".into(), e.federates_with.clone().into());
    o.insert("dns_names".into(), e.dns_names.clone().into());
    o.insert("admin".into(), e.admin.into());
    o.insert("downstream".into(), e.downstream.into());
    o.insert("hint".into(), e.hint.clone().into());
    o.insert("expires_at".into(), e.expires_at.into());
    o.insert("revision_number".into(), e.revision_number.into());
    o.insert("created_at".into(), e.created_at.into());
    Value::Object(o)
}

/// A batch item's status as JSON.
pub(super) fn status_json(s: &Option<admin::Status>) -> Value {
    match s {
        Some(s) => serde_json::json!({ "code": s.code, "message": s.message }),
        None => serde_json::json!({ "code": 0, "message": "" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_spellings_and_round_trips_output() {
        let v: Value = serde_json::from_str(
            r#"{"spiffeId":"spiffe://example.org/a","parent_id":"spiffe://example.org/p",
                "selectors":[{"type":"unix","value":"uid:1"},"k8s:ns:prod"],
                "x509SvidTtl":60,"jwt_svid_ttl":"30","dnsNames":["a.org"],
                "federatesWith":["other.org"],"admin":true,"expiresAt":"1700000000","hint":"h"}"#,
        )
        .unwrap();
        let e = entry_from_json(&v).unwrap();
        assert_eq!(e.spiffe_id, "spiffe://example.org/a");
        assert_eq!(e.selectors[1].r#type, "k8s");
        assert_eq!(e.selectors[1].value, "ns:prod");
        assert_eq!((e.x509_svid_ttl, e.jwt_svid_ttl), (60, 30));
        assert_eq!(e.expires_at, 1_700_000_000);
        assert!(e.admin);
        let again = entry_from_json(&entry_json(&e)).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn errors_name_the_field() {
        let v: Value = serde_json::from_str(r#"{"spiffe_idd":"x"}"#).unwrap();
        assert_eq!(
            entry_from_json(&v).unwrap_err(),
            "spiffe_idd: unknown field"
        );
        let v: Value = serde_json::from_str(r#"{"x509_svid_ttl":"soon"}"#).unwrap();
        assert!(entry_from_json(&v)
            .unwrap_err()
            .starts_with("x509_svid_ttl:"));
        let v: Value = serde_json::from_str(r#"{"x509_svid_ttl":9999999999}"#).unwrap();
        assert!(entry_from_json(&v).unwrap_err().contains("32 bits"));
        let v: Value = serde_json::from_str(r#"{"selectors":["nocolon"]}"#).unwrap();
        assert!(entry_from_json(&v).unwrap_err().starts_with("selectors[0]"));
    }
}
