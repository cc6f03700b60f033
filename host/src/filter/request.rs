//! `@request.*` identifiers: values taken from the request JSON (`q.request`), plus the joins
//! PocketBase uses for `@request.auth.<field>` and `@request.body.<relation>.<field>` paths.
//!
//! Missing request values resolve to NULL (so `@request.auth.id = ''` holds for guests).

use serde_json::{Value, json};

use super::build::equal;
use super::resolve::{Modifier, Resolver, split_modifier};
use super::sql::{Emptiness, Frag, Join, Resolved};
use super::{FilterError, SqlParam};
use crate::store::schema::{Field, FieldKind, RelationOptions};

/// Auth record fields PocketBase always reads from the request itself rather than joining
/// the auth collection.
const PLAIN_AUTH_FIELDS: [&str; 6] = [
    "id",
    "collectionId",
    "collectionName",
    "email",
    "emailVisibility",
    "verified",
];

/// Follows `keys` through objects and arrays. Header names also match in PocketBase's
/// normalised form (lowercase, `-` as `_`).
fn lookup<'v>(root: &'v Value, keys: &[&str]) -> Option<&'v Value> {
    let mut cur = root;
    for (i, key) in keys.iter().enumerate() {
        cur = match cur {
            Value::Object(m) => match m.get(*key) {
                Some(v) => v,
                None if i == 1 && keys[0] == "headers" => m
                    .iter()
                    .find(|(k, _)| k.to_ascii_lowercase().replace('-', "_") == *key)
                    .map(|(_, v)| v)?,
                None => return None,
            },
            Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// A request value as a bound parameter. Numeric strings become numbers when they are named
/// like a number field of the collection (form-data bodies send numbers as text).
fn to_param(v: &Value, number_field: bool) -> SqlParam {
    match v {
        Value::Null => SqlParam::Null,
        Value::Bool(b) => SqlParam::Int(i64::from(*b)),
        Value::Number(n) => n.as_f64().map_or(SqlParam::Null, SqlParam::Real),
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(n) if number_field => SqlParam::Real(n),
            _ => SqlParam::Text(s.clone()),
        },
        Value::Array(_) | Value::Object(_) => SqlParam::Text(v.to_string()),
    }
}

/// A submitted value as the field would store it, for `:changed`: numbers and booleans from
/// form text, a single value of a multi-valued field as a one-element array.
fn normalize_for_field(field: &Field, v: &Value) -> SqlParam {
    match (&field.kind, v) {
        (FieldKind::Bool(_), Value::String(s)) => {
            SqlParam::Int(i64::from(matches!(s.as_str(), "true" | "1" | "on")))
        }
        (FieldKind::Select(_) | FieldKind::Relation(_), Value::String(s))
            if field.is_multiple() =>
        {
            let items: Vec<&str> = if s.is_empty() {
                Vec::new()
            } else {
                vec![s.as_str()]
            };
            SqlParam::Text(json!(items).to_string())
        }
        (FieldKind::Select(_) | FieldKind::Relation(_), Value::Null) if field.is_multiple() => {
            SqlParam::Text("[]".into())
        }
        (FieldKind::Number(_), _) => to_param(v, true),
        _ => to_param(v, false),
    }
}

/// The value as text, as Go's `cast.ToString` would give it.
fn to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map(|f| f.to_string()).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// The items of a body value treated as a list (null is empty, a scalar one item).
fn items(v: Option<&Value>) -> Vec<Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(v) => vec![v.clone()],
    }
}

fn needs_multi_valuer(field: &Field, name: &str) -> Result<(), FilterError> {
    match field.kind {
        FieldKind::Select(_) | FieldKind::Relation(_) => Ok(()),
        _ => Err(FilterError::Invalid(format!(
            "\"{name}\": :each and :length need a select or relation field"
        ))),
    }
}

impl<'a> Resolver<'_, 'a> {
    /// Any `@request.*` identifier.
    pub(super) fn request_field(
        &mut self,
        name: &str,
        props: &[&str],
    ) -> Result<Resolved, FilterError> {
        let valid = match props.get(1).copied() {
            Some("context" | "method") => props.len() == 2,
            Some("auth" | "body" | "query" | "headers") => props.len() >= 3,
            _ => false,
        };
        if !valid {
            return Err(FilterError::UnknownField(name.to_string()));
        }
        let Some(request) = self.q.request else {
            return Ok(Resolved::null());
        };
        match props[1] {
            "auth" => self.auth_field(name, request, props),
            "body" => self.body_field(name, request, props),
            _ => self.static_field(request, &props[1..]),
        }
    }

    /// A value read straight from the request JSON, with `:isset` / `:lower`.
    fn static_field(&self, request: &Value, path: &[&str]) -> Result<Resolved, FilterError> {
        let Some((&last, parents)) = path.split_last() else {
            return Ok(Resolved::null());
        };
        let (last, modifier) = split_modifier(last)?;
        let mut keys = parents.to_vec();
        keys.push(last);
        let value = lookup(request, &keys);
        let number_field = self
            .q
            .collection
            .field(last)
            .is_some_and(|f| matches!(f.kind, FieldKind::Number(_)));
        let param = value.map_or(SqlParam::Null, |v| to_param(v, number_field));
        match modifier {
            None => Ok(match param {
                SqlParam::Null => Resolved::null(),
                p => {
                    let mut r = Resolved::literal(p);
                    if let Some(Value::Bool(b)) = value {
                        r.like_text = Some(b.to_string());
                    }
                    r
                }
            }),
            Some(Modifier::Isset) => Ok(Resolved::constant(if value.is_some() {
                "TRUE"
            } else {
                "FALSE"
            })),
            Some(Modifier::Lower) => Ok(Resolved::lower_literal(param)),
            // A body key that is not a field of the collection never counts as changed.
            Some(Modifier::Changed) if keys[0] == "body" => Ok(Resolved::constant("0")),
            Some(_) => Err(FilterError::Invalid(format!(
                "unsupported modifier in \"@request.{}\"",
                path.join(".")
            ))),
        }
    }

    /// `@request.auth.*`: plain fields come from the request; others join the auth record so
    /// that relations, hidden fields and `:each` work as in PocketBase.
    fn auth_field(
        &mut self,
        name: &str,
        request: &Value,
        props: &[&str],
    ) -> Result<Resolved, FilterError> {
        let Some(auth) = request.get("auth").filter(|a| a.is_object()) else {
            return Ok(Resolved::null());
        };
        if props.len() == 3 && PLAIN_AUTH_FIELDS.contains(&props[2]) {
            return self.static_field(request, &props[1..]);
        }
        let coll = ["collectionId", "collectionName"]
            .iter()
            .filter_map(|k| auth.get(*k).and_then(Value::as_str))
            .find_map(|n| self.collection(n));
        let Some(coll) = coll else {
            return self.static_field(request, &props[1..]);
        };
        let id = Frag::param(SqlParam::Text(
            auth.get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ));
        let mut run = self.start(name, true, true);
        run.coll = coll;
        run.key = "@request.auth".into();
        run.alias = self.join("@request.auth", Frag::raw(coll.table()), Some(coll), |a| {
            Some(Frag::raw(format!("{a}.`id` = ")).f(&id))
        })?;
        run.uses_join = true;
        let mm = self.fresh("mj");
        run.mm.joins.push(Join {
            table: Frag::raw(coll.table()),
            alias: mm.clone(),
            on: Some(Frag::raw(format!("{mm}.`id` = ")).f(&id)),
        });
        run.mm_alias = mm;
        self.props(&mut run, &props[2..])
    }

    /// `@request.body.*`.
    fn body_field(
        &mut self,
        name: &str,
        request: &Value,
        props: &[&str],
    ) -> Result<Resolved, FilterError> {
        let (fname, modifier) = split_modifier(props[2])?;
        let Some(field) = self.q.collection.field(fname) else {
            return self.static_field(request, &props[1..]);
        };
        let body_value = lookup(request, &["body", fname]);
        if let FieldKind::Relation(opts) = &field.kind
            && props.len() > 3
        {
            if modifier.is_some() {
                return Err(FilterError::Invalid(format!(
                    "unexpected modifier in \"{name}\""
                )));
            }
            return self.body_relation(name, field, opts, body_value, &props[3..]);
        }
        if props.len() == 3 {
            match modifier {
                Some(Modifier::Each) => return self.body_each(name, field, body_value),
                Some(Modifier::Length) => {
                    needs_multi_valuer(field, name)?;
                    let n = items(body_value).len();
                    return Ok(Resolved::plain(
                        Frag::raw(n.to_string()),
                        Emptiness::Unknown,
                    ));
                }
                Some(Modifier::Lower) => {
                    let text = body_value.map(to_text).unwrap_or_default();
                    return Ok(Resolved::lower_literal(SqlParam::Text(text)));
                }
                Some(Modifier::Changed) => return self.body_changed(field, body_value),
                Some(Modifier::Isset) | None => {}
            }
        }
        self.static_field(request, &props[1..])
    }

    /// `@request.body.tags:each`: the submitted values as rows of `json_each`.
    fn body_each(
        &mut self,
        name: &str,
        field: &Field,
        value: Option<&Value>,
    ) -> Result<Resolved, FilterError> {
        needs_multi_valuer(field, name)?;
        let json = Frag::param(SqlParam::Text(Value::Array(items(value)).to_string()));
        let table = Frag::raw("json_each(").f(&json).s(")");
        let je = self.join(
            &format!("@request.body.{}:each", field.name),
            table.clone(),
            None,
            |_| None,
        )?;
        let mut run = self.start(name, true, true);
        run.uses_join = true;
        if field.is_multiple() {
            run.with_multi = true;
            let mm = self.fresh("mj");
            run.mm.joins.push(Join {
                table,
                alias: mm.clone(),
                on: None,
            });
            run.mm.value = Frag::raw(format!("{mm}.value"));
        }
        Ok(self.finish(
            &mut run,
            Frag::raw(format!("{je}.value")),
            Emptiness::Unknown,
        ))
    }

    /// `@request.body.f:changed`: 1 when the body has `f` and its value (normalised for the
    /// field's type) differs from the stored one, else 0. PocketBase yields a parameterless
    /// 1/0 here, which `params_internal` mimics for `~`.
    fn body_changed(
        &mut self,
        field: &Field,
        value: Option<&Value>,
    ) -> Result<Resolved, FilterError> {
        let Some(value) = value else {
            return Ok(Resolved::constant("0"));
        };
        let submitted = match normalize_for_field(field, value) {
            SqlParam::Null => Resolved::null(),
            p => Resolved::literal(p),
        };
        let mut run = self.start(&field.name, true, false);
        let stored = self.last(&mut run, &field.name)?;
        let cmp = equal(false, &submitted, &stored);
        let mut r = Resolved::plain(Frag::raw("(").f(&cmp).s(")"), Emptiness::NonEmpty);
        r.params_internal = true;
        Ok(r)
    }

    /// `@request.body.rel.field`: joins the records whose ids were submitted.
    fn body_relation(
        &mut self,
        name: &str,
        field: &Field,
        opts: &RelationOptions,
        value: Option<&Value>,
        rest: &[&str],
    ) -> Result<Resolved, FilterError> {
        let mut ids: Vec<String> = Vec::new();
        for v in items(value) {
            let id = to_text(&v);
            if !id.is_empty() && !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Ok(Resolved::null());
        }
        let Some(rel) = self.collection(&opts.collection_id) else {
            return Err(FilterError::Invalid(format!(
                "the collection of relation \"{}\" does not exist",
                field.name
            )));
        };
        let list = Frag::join(
            &ids.into_iter()
                .map(|id| Frag::param(SqlParam::Text(id)))
                .collect::<Vec<_>>(),
            ", ",
        );
        let key = format!("@request.body.{}", field.name);
        let mut run = self.start(name, true, true);
        run.coll = rel;
        run.alias = self.join(&key, Frag::raw(rel.table()), Some(rel), |a| {
            Some(Frag::raw(format!("{a}.`id` IN (")).f(&list).s(")"))
        })?;
        run.key = key;
        run.uses_join = true;
        run.with_multi = field.is_multiple();
        let mm = self.fresh("mj");
        run.mm.joins.push(Join {
            table: Frag::raw(rel.table()),
            alias: mm.clone(),
            on: Some(Frag::raw(format!("{mm}.`id` IN (")).f(&list).s(")")),
        });
        run.mm_alias = mm;
        self.props(&mut run, rest)
    }
}
