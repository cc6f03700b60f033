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

/// A parsed `fields` parameter: a tree of keys, `*` meaning every key at that level.
#[derive(Debug, Default)]
pub struct FieldsPicker {
    children: BTreeMap<String, FieldsPicker>,
    excerpt: Option<(usize, bool)>,
}

impl FieldsPicker {
    pub fn parse(spec: &str) -> Option<FieldsPicker> {
        let spec = spec.trim();
        if spec.is_empty() {
            return None;
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
            if let Some(m) = modifier
                .and_then(|m| m.strip_prefix("excerpt("))
                .and_then(|m| m.strip_suffix(')'))
            {
                let mut args = m.split(',').map(str::trim);
                let max = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
                let ellipsis = args
                    .next()
                    .map(|a| a == "true" || a == "1")
                    .unwrap_or(false);
                node.excerpt = Some((max, ellipsis));
            }
        }
        Some(root)
    }

    pub fn apply(&self, v: Value) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.into_iter().map(|i| self.apply(i)).collect()),
            Value::Object(m) => {
                let all = self.children.get("*");
                let mut out = Map::new();
                for (k, v) in m {
                    match self.children.get(&k).or(all) {
                        Some(child) if child.children.is_empty() => out.insert(k, child.leaf(v)),
                        Some(child) => out.insert(k, child.apply(v)),
                        None => None,
                    };
                }
                Value::Object(out)
            }
            other => self.leaf(other),
        }
    }

    fn leaf(&self, v: Value) -> Value {
        match (self.excerpt, v) {
            (Some((max, ellipsis)), Value::String(s)) => Value::String(excerpt(&s, max, ellipsis)),
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

/// Plain-text excerpt: tags stripped, whitespace collapsed, cut at `max` characters.
fn excerpt(s: &str, max: usize, ellipsis: bool) -> String {
    let mut text = String::with_capacity(s.len());
    let mut in_tag = false;
    for ch in s.chars() {
        match ch {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let text = words.join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max).collect();
    if ellipsis {
        cut.push_str("...");
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_picker_keeps_listed_keys_nested_and_excerpts() {
        let p = FieldsPicker::parse("id,body:excerpt(5,true),expand.author.name").expect("parse");
        let v = json!({"id": "a", "title": "t", "body": "<p>hello world</p>",
                       "expand": {"author": {"name": "n", "email": "e"}}});
        assert_eq!(
            p.apply(v),
            json!({"id": "a", "body": "hello...", "expand": {"author": {"name": "n"}}})
        );
        let all = FieldsPicker::parse("*,expand.author.id").expect("parse");
        let v = json!({"id": "a", "expand": {"author": {"id": "x", "name": "n"}}});
        assert_eq!(
            all.apply(v),
            json!({"id": "a", "expand": {"author": {"id": "x"}}})
        );
    }
}
