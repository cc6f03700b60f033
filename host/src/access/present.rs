//! How a record is shown to a caller: `collectionId`/`collectionName` added, hidden fields
//! removed (password and tokenKey always), an auth record's email only to its owner or a
//! superuser unless `emailVisibility`, expanded relations likewise, then the `fields` picker.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Auth;
use crate::store::schema::{Collection, FieldKind};
use crate::store::{Record, Schema};

/// Whether a field holds a secret: a password hash, an auth record's tokenKey, or anything the
/// schema marks hidden. Secrets never leave the server outside the record API itself (which
/// shows hidden non-secret fields to superusers only, as PocketBase does).
pub fn is_secret(c: &Collection, name: &str) -> bool {
    match c.field(name) {
        Some(f) => {
            f.hidden
                || matches!(f.kind, FieldKind::Password(_))
                || c.is_auth() && name == "tokenKey"
        }
        None => false,
    }
}

/// Removes every secret field (see [`is_secret`]) from a record.
pub fn strip_secrets(c: &Collection, rec: &mut Record) {
    rec.retain(|k, _| !is_secret(c, k));
}

/// A record serialized without its secret fields, without copying it first.
pub struct WithoutSecrets<'a>(pub &'a Collection, pub &'a Record);

impl serde::Serialize for WithoutSecrets<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.1.iter().filter(|(k, _)| !is_secret(self.0, k)))
    }
}

/// The record as the caller may see it.
pub fn record(schema: &Schema, c: &Collection, mut rec: Record, viewer: &Auth) -> Value {
    let superuser = viewer.is_superuser();
    let id = rec
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut out = Map::with_capacity(rec.len() + 2);
    out.insert("collectionId".into(), Value::String(c.id.clone()));
    out.insert("collectionName".into(), Value::String(c.name.clone()));
    for f in &c.fields {
        let Some(v) = rec.remove(&f.name) else {
            continue;
        };
        if matches!(f.kind, FieldKind::Password(_)) || f.name == "tokenKey" && c.is_auth() {
            continue;
        }
        if f.hidden && !superuser {
            continue;
        }
        out.insert(f.name.clone(), v);
    }
    if c.is_auth() && !superuser {
        let owner = viewer.id() == Some(id.as_str())
            && matches!(viewer, Auth::Record { collection, .. } if collection.id == c.id);
        let visible = out
            .get("emailVisibility")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !owner && !visible {
            out.remove("email");
        }
    }
    if let Some(Value::Object(expand)) = rec.remove("expand") {
        // (An empty object stays: PocketBase shows `expand: {}` when expansion was asked for.)
        let mut shown = Map::new();
        for (k, v) in expand {
            shown.insert(k, present_expanded(schema, v, viewer));
        }
        out.insert("expand".into(), Value::Object(shown));
    }
    Value::Object(out)
}

fn present_expanded(schema: &Schema, v: Value, viewer: &Auth) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| present_expanded(schema, i, viewer))
                .collect(),
        ),
        Value::Object(mut m) => {
            let cid = m
                .remove("collectionId")
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            m.remove("collectionName");
            match schema.get(&cid) {
                Some(c) => record(schema, c, m, viewer),
                None => Value::Object(m),
            }
        }
        other => other,
    }
}

/// A parsed `fields` parameter: a tree of keys. As in PocketBase's picker, a key listed whole
/// (`expand`) keeps its whole value even when deeper paths under it are listed too, and `*`
/// means "every other key" only as a whole last segment (`expand.*` yes, `expand.*.id` picks a
/// key named `*`, so nothing).
#[derive(Debug, Default)]
pub struct FieldsPicker {
    children: BTreeMap<String, FieldsPicker>,
    /// This path was listed itself (not only as a prefix of a longer one).
    leaf: bool,
    excerpt: Option<(usize, bool)>,
}

impl FieldsPicker {
    /// The picker for a `fields` parameter, `None` when it is blank or invalid (see
    /// [`FieldsPicker::parse_checked`] for the error).
    pub fn parse(spec: &str) -> Option<FieldsPicker> {
        FieldsPicker::parse_checked(spec).ok().flatten()
    }

    /// Parses a `fields` parameter: comma-separated dot paths, `*` for every key, and the
    /// `:excerpt(max[, withEllipsis])` modifier. An unknown modifier or bad arguments is an
    /// error (PocketBase answers 400), with the reason.
    pub fn parse_checked(spec: &str) -> Result<Option<FieldsPicker>, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Ok(None);
        }
        let mut root = FieldsPicker::default();
        for item in split_top(spec) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (path, modifier) = match item.split_once(':') {
                Some((p, m)) => (p, Some(m)),
                None => (item, None),
            };
            let mut node = &mut root;
            for part in path.split('.') {
                node = node.children.entry(part.to_string()).or_default();
            }
            node.leaf = true;
            if let Some(m) = modifier {
                node.excerpt = Some(parse_modifier(m)?);
            }
        }
        Ok(Some(root))
    }

    pub fn apply(&self, v: Value) -> Value {
        match v {
            // Lists of objects are picked item by item; other lists are kept as they are.
            Value::Array(items) if items.first().is_some_and(Value::is_object) => {
                Value::Array(items.into_iter().map(|i| self.apply(i)).collect())
            }
            Value::Object(m) => {
                let all = self.children.get("*").filter(|c| c.leaf);
                let mut out = Map::new();
                for (k, v) in m {
                    match self.children.get(&k).or(all) {
                        Some(child) if child.leaf => out.insert(k, child.leaf(v)),
                        Some(child) => out.insert(k, child.apply(v)),
                        None => None,
                    };
                }
                Value::Object(out)
            }
            other => other,
        }
    }

    fn leaf(&self, v: Value) -> Value {
        match (self.excerpt, v) {
            (Some((max, ellipsis)), Value::String(s)) => {
                Value::String(super::excerpt::excerpt(&s, max, ellipsis))
            }
            (_, v) => v,
        }
    }
}

/// Splits on commas outside parentheses (`title:excerpt(10,true),id`).
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A field modifier as PocketBase's picker reads it: the name, then arguments split on
/// parentheses, commas and spaces. `excerpt` is the only modifier.
fn parse_modifier(raw: &str) -> Result<(usize, bool), String> {
    let mut parts = raw
        .split(['(', ')', ',', ' '])
        .map(|p| p.trim_matches(|c: char| c.is_whitespace()))
        .filter(|p| !p.is_empty());
    let name = parts.next().unwrap_or_default();
    if name != "excerpt" {
        return Err(format!("missing or invalid modifier {name:?}"));
    }
    let args: Vec<&str> = parts.collect();
    let (max, ellipsis) = match args.as_slice() {
        [] => return Err("excerpt: max argument is required".into()),
        [max] => (*max, None),
        [max, ellipsis] => (*max, Some(*ellipsis)),
        _ => return Err("excerpt: too many arguments".into()),
    };
    let max = go_cast_int(max)
        .filter(|m| *m > 0)
        .ok_or("excerpt: max must be > 0")?;
    let ellipsis =
        ellipsis.is_some_and(|e| matches!(e, "1" | "t" | "T" | "TRUE" | "true" | "True"));
    Ok((usize::try_from(max).unwrap_or(usize::MAX), ellipsis))
}

/// Go's `cast.ToInt` on text: base prefixes (`0x`, `0o`, `0b`, a leading `0` for octal),
/// underscores, and a zero decimal part (`5.0`) accepted; anything else is `None` (cast's 0).
fn go_cast_int(s: &str) -> Option<i64> {
    let s = match s.split_once('.') {
        Some((int, frac)) if !frac.is_empty() && frac.bytes().all(|b| b == b'0') => int,
        _ => s,
    };
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(b) = lower.strip_prefix("0x") {
        (16, b.to_string())
    } else if let Some(b) = lower.strip_prefix("0o") {
        (8, b.to_string())
    } else if let Some(b) = lower.strip_prefix("0b") {
        (2, b.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string())
    } else {
        (10, lower)
    };
    let body = body.replace('_', "");
    let n = i64::from_str_radix(&body, radix).ok()?;
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_picker_keeps_listed_keys_nested_and_excerpts() {
        let p = FieldsPicker::parse("id,body:excerpt(5,true),expand.author.name").expect("parse");
        assert!(FieldsPicker::parse_checked("id,body:excerpt(0,true)").is_err());
        assert!(FieldsPicker::parse_checked("body:excerpt(x)").is_err());
        assert!(FieldsPicker::parse_checked("body:excerpt()").is_err());
        assert!(FieldsPicker::parse_checked("body:nope(1)").is_err());
        assert!(FieldsPicker::parse_checked("body:excerpt(1,2,3)").is_err());
        assert!(FieldsPicker::parse_checked("body:excerpt(0x10, true)").is_ok());
        let v = json!({"id": "a", "title": "t", "body": "<p>hello world</p>",
                       "expand": {"author": {"name": "n", "email": "e"}}});
        assert_eq!(
            p.apply(v),
            json!({"id": "a", "body": "hello...", "expand": {"author": {"name": "n"}}})
        );
        // As PocketBase: `*` is a wildcard only as a whole last segment, and a key listed whole
        // stays whole beside deeper paths under it.
        let v = json!({"id": "a", "expand": {"team": {"id": "t", "name": "n"}}});
        let star_mid = FieldsPicker::parse("id,expand.*.id").expect("parse");
        assert_eq!(star_mid.apply(v.clone()), json!({"id": "a", "expand": {}}));
        let star_end = FieldsPicker::parse("expand.*").expect("parse");
        assert_eq!(
            star_end.apply(v.clone()),
            json!({"expand": {"team": {"id": "t", "name": "n"}}})
        );
        let whole = FieldsPicker::parse("expand.team.id,expand").expect("parse");
        assert_eq!(
            whole.apply(v.clone()),
            json!({"expand": {"team": {"id": "t", "name": "n"}}})
        );
        let all = FieldsPicker::parse("*,expand.author.id").expect("parse");
        let v = json!({"id": "a", "expand": {"author": {"id": "x", "name": "n"}}});
        assert_eq!(
            all.apply(v),
            json!({"id": "a", "expand": {"author": {"id": "x"}}})
        );
    }
}
