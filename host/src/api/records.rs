//! The records API: `/api/collections/{c}/records[/{id}]` — list, view, create, update, delete.
//! Each handler resolves the collection, checks the API rule, and hands one job to the store;
//! a create/update/delete is a single writer job, so a failure leaves nothing half-written.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::auth::busy;
use super::error::{ApiError, ApiResult};
use super::extract::Input;
use super::guard::ClientIp;
use crate::access::Auth;
use crate::access::expand::expand_visible;
use crate::access::present::{self, FieldsPicker};
use crate::access::rules::{allowed, request_info, rule_condition};
use crate::auth::{gate, password};
use crate::filter;
use crate::records::validate::{self, Access};
use crate::store::records::{self, ListQuery};
use crate::store::{Collection, Record, Schema, StoreError, WriteCtx};

/// Longest filter accepted, as PocketBase.
pub const MAX_FILTER_LEN: usize = 3500;
const DEFAULT_PER_PAGE: i64 = 30;
const MAX_PER_PAGE: i64 = 1000;

pub fn collection(schema: &Schema, name: &str) -> ApiResult<Arc<Collection>> {
    schema
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Missing collection context."))
}

/// Go's `strconv.ParseBool`, which PocketBase reads `skipTotal` with.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Identifiers only superusers may use in a list's `filter` or `sort`. PocketBase looks for
/// them in the raw text before parsing anything (inside string literals too), so a guest's
/// `sort=@collection...` is a 403, not a 400.
const SUPERUSER_ONLY_FIELDS: [&str; 2] = ["@collection.", "@request."];

fn check_superuser_only_fields(auth: &Auth, q: &HashMap<String, String>) -> ApiResult<()> {
    if auth.is_superuser() {
        return Ok(());
    }
    for param in ["filter", "sort"] {
        let Some(v) = q.get(param) else { continue };
        if let Some(field) = SUPERUSER_ONLY_FIELDS.iter().find(|f| v.contains(*f)) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Only superusers can filter by {field}"),
            ));
        }
    }
    Ok(())
}

/// `page`, `perPage` and `skipTotal`, parsed as PocketBase parses them (Go's `Atoi` and
/// `ParseBool`): a value that does not parse is a 400; an empty one is ignored; a page below 1
/// is page 1, a perPage below 1 the default, above the maximum the maximum.
fn paging(q: &HashMap<String, String>) -> ApiResult<(i64, i64, bool)> {
    let bad = |name: &str, v: &str| {
        ApiError::bad_request(format!("Invalid {name} value {v:?}.")).with_data(json!({}))
    };
    let int = |name: &str| -> ApiResult<Option<i64>> {
        match q.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| bad(name, v)),
        }
    };
    let skip_total = match q.get("skipTotal").map(String::as_str) {
        None | Some("") => false,
        Some(v) => parse_go_bool(v).ok_or_else(|| bad("skipTotal", v))?,
    };
    let page = int("page")?.filter(|p| *p > 0).unwrap_or(1);
    let per_page = match int("perPage")? {
        Some(n) if n > 0 => n.min(MAX_PER_PAGE),
        _ => DEFAULT_PER_PAGE,
    };
    Ok((page, per_page, skip_total))
}

/// The `fields` parameter's picker; an invalid modifier is a 400, as in PocketBase.
fn fields_picker(q: &HashMap<String, String>) -> ApiResult<Option<FieldsPicker>> {
    let Some(spec) = q.get("fields") else {
        return Ok(None);
    };
    FieldsPicker::parse_checked(spec)
        .map_err(|e| ApiError::bad_request(format!("Invalid fields parameter: {e}.")))
}

/// Shows records to the caller: expand, visibility, then the fields picker.
fn show(
    conn: &crate::store::ReadConn,
    schema: &Schema,
    c: &Collection,
    mut recs: Vec<Record>,
    auth: &Auth,
    request: &Value,
    q: &HashMap<String, String>,
) -> Result<Vec<Value>, StoreError> {
    if let Some(paths) = q.get("expand").filter(|e| !e.is_empty()) {
        expand_visible(conn, schema, c, &mut recs, paths, auth, request)?;
    }
    let picker = fields_picker(q).map_err(|e| StoreError::BadRequest(e.message))?;
    let mut out = Vec::with_capacity(recs.len());
    for r in recs {
        let mut v = present::record(schema, c, r, auth);
        if let Some(p) = &picker {
            v = p.apply(v);
        }
        out.push(v);
    }
    Ok(out)
}

/// Parses a filter or rule; only the empty string is no condition at all (blank or
/// comment-only text is refused, as in PocketBase).
fn parse_nonempty(src: &str) -> Result<Option<filter::Expr>, filter::FilterError> {
    if src.is_empty() {
        Ok(None)
    } else {
        filter::parse(src).map(Some)
    }
}

/// `GET /api/collections/{c}/records`. Errors come in PocketBase's order: missing collection
/// (404), superusers-only list (403), `@request`/`@collection` in a guest's filter or sort
/// (403), then bad paging values, filter and sort (400).
pub async fn list(
    State(st): State<AppState>,
    auth: Auth,
    method: Method,
    headers: HeaderMap,
    Path(coll): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let schema = st.store.schema();
    let c = collection(&schema, &coll)?;
    let rule = allowed(&auth, &c.list_rule)?.map(String::from);
    check_superuser_only_fields(&auth, &q)?;
    let (page, per_page, skip_total) = paging(&q)?;
    let filter_src = q.get("filter").cloned().unwrap_or_default();
    if filter_src.len() > MAX_FILTER_LEN {
        return Err(ApiError::bad_request(format!(
            "The filter is too long (max {MAX_FILTER_LEN} characters)."
        )));
    }
    let request = request_info(&auth, &method, &q, &headers, None);
    let counts = st.store.counts();
    let result = st
        .store
        .read(move |conn, schema| {
            let fq = filter::Query {
                lookup: schema,
                collection: &c,
                request: Some(&request),
                allow_request_refs: auth.is_superuser(),
                allow_hidden: auth.is_superuser(),
                now: chrono::Utc::now(),
            };
            // The rule and the client's filter share joins, as in PocketBase.
            let rq = filter::Query {
                allow_request_refs: true,
                allow_hidden: true,
                ..fq
            };
            let rule_expr = match rule.as_deref() {
                Some(r) if filter::is_blank(r) => None,
                Some(r) => parse_nonempty(r)?,
                None => None,
            };
            let filter_expr = parse_nonempty(&filter_src)?;
            let mut parts = Vec::new();
            if let Some(r) = &rule_expr {
                parts.push((r, &rq));
            }
            if let Some(f) = &filter_expr {
                parts.push((f, &fq));
            }
            let sort = q.get("sort").map(String::as_str).unwrap_or("");
            let sql = filter::list_sql(&parts, sort, &fq)?;
            let order_sql = if sql.order_sql.is_empty() {
                // A view has no rowid: its rows come in the query's own order.
                if c.is_view() {
                    String::new()
                } else {
                    format!("{}.rowid ASC", c.table())
                }
            } else {
                sql.order_sql
            };
            let lq = ListQuery {
                count_cache: Some(counts),
                where_sql: sql.where_sql,
                params: sql.params,
                order_sql,
                order_params: sql.order_params,
                limit: per_page,
                offset: (page - 1).saturating_mul(per_page),
                count: !skip_total,
            };
            let (items, total) = records::list(conn, &c, &lq)?;
            let items = show(conn, schema, &c, items, &auth, &request, &q)?;
            Ok((items, total))
        })
        .await
        .map_err(|e| {
            ApiError::from_store(e, "Something went wrong while processing your request.")
        })?;
    let (items, total) = result;
    let (total_items, total_pages) = match total {
        Some(t) => (t, (t + per_page - 1) / per_page),
        None => (-1, -1),
    };
    Ok(Json(json!({
        "page": page,
        "perPage": per_page,
        "totalItems": total_items,
        "totalPages": total_pages,
        "items": items,
    })))
}

pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    method: Method,
    headers: HeaderMap,
    Path((coll, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let schema = st.store.schema();
    let c = collection(&schema, &coll)?;
    let rule = allowed(&auth, &c.view_rule)?.map(String::from);
    let request = request_info(&auth, &method, &q, &headers, None);
    let v = st
        .store
        .read(move |conn, schema| {
            if let Some(rule) = &rule
                && let Some((sql, params)) = rule_condition(schema, &c, rule, &request)?
                && !records::matches(conn, &c, &id, &sql, &params)?
            {
                return Err(StoreError::NotFound);
            }
            let rec = records::get(conn, &c, &id)?.ok_or(StoreError::NotFound)?;
            let mut shown = show(conn, schema, &c, vec![rec], &auth, &request, &q)?;
            shown.pop().ok_or(StoreError::NotFound)
        })
        .await
        .map_err(|e| {
            ApiError::from_store(e, "Something went wrong while processing your request.")
        })?;
    Ok(Json(v))
}

/// Hashes a new password off the async runtime and off the writer thread.
async fn hash_password(
    st: &AppState,
    ip: &str,
    c: &Collection,
    input: &Record,
) -> ApiResult<Option<String>> {
    // Auth collections, and the system `_otps` (its one-time passwords are hashed too).
    if !c
        .field("password")
        .is_some_and(|f| matches!(f.kind, crate::store::FieldKind::Password(_)))
    {
        return Ok(None);
    }
    let Some(Value::String(pw)) = input.get("password") else {
        return Ok(None);
    };
    if pw.is_empty() {
        return Ok(None);
    }
    let pw = pw.clone();
    // Keyed by the email being set (sign-ups) so one client's burst takes turns with others.
    let key = input
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    gate::run(&st.guard.passwords, ip, &key, move || password::hash(&pw))
        .await
        .map(Some)
        .map_err(busy)
}

/// Superusers manage auth records freely; everyone else is a regular writer (cannot set
/// `verified`, cannot change `email` directly, needs `oldPassword` to change a password).
fn access_of(auth: &Auth) -> Access {
    if auth.is_superuser() {
        Access::Manager
    } else {
        Access::Regular
    }
}

/// Verifies a regular caller's `oldPassword` before a password change, off the writer thread.
async fn check_old_password(
    st: &AppState,
    ip: &str,
    c: &Arc<Collection>,
    id: &str,
    input: &Record,
) -> ApiResult<()> {
    if !c.is_auth()
        || input
            .get("password")
            .is_none_or(|p| p.as_str().is_none_or(|s| s.is_empty()))
    {
        return Ok(());
    }
    let old = input
        .get("oldPassword")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (c2, id2) = (c.clone(), id.to_string());
    let current = st
        .store
        .read(move |conn, _| records::get(conn, &c2, &id2))
        .await?;
    let Some(current) = current else {
        return Ok(());
    };
    let hash = current
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let ok = gate::run(&st.guard.passwords, ip, id, move || {
        password::verify(&old, &hash)
    })
    .await
    .map_err(busy)?;
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("Failed to update record.")
            .with_data(serde_json::to_value(validate::invalid_old_password()).unwrap_or_default()))
    }
}

/// A non-superuser's input without the hidden fields (and their modifiers, `f+`, `f:autogenerate`,
/// ...): PocketBase keeps those fields' current values, so only superusers set them. The auth
/// `password` is the exception.
fn without_hidden_fields(c: &Collection, mut input: Record) -> Record {
    let field_of = |key: &str| {
        c.field(key)
            .or_else(|| key.strip_prefix('+').and_then(|k| c.field(k)))
            .or_else(|| key.strip_suffix(['+', '-']).and_then(|k| c.field(k)))
            .or_else(|| key.strip_suffix(":autogenerate").and_then(|k| c.field(k)))
    };
    input.retain(|key, _| {
        field_of(key).is_none_or(|f| !f.hidden || (c.is_auth() && f.name == "password"))
    });
    input
}

/// bcrypt cannot hash more than 72 bytes.
fn password_too_long(c: &Collection, input: &Record) -> bool {
    c.is_auth()
        && input
            .get("password")
            .and_then(Value::as_str)
            .is_some_and(|p| p.len() > 72)
}

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Update,
    Delete,
    /// Update when the body's id exists, create otherwise (batch `PUT`).
    Upsert,
}

/// Whether an API rule lets the caller through.
#[derive(Debug, Clone)]
pub enum Gate {
    Forbidden,
    Open,
    Expr(String),
}

fn gate(auth: &Auth, rule: &Option<String>) -> Gate {
    match allowed(auth, rule) {
        Err(_) => Gate::Forbidden,
        Ok(None) => Gate::Open,
        Ok(Some(r)) if r.trim().is_empty() => Gate::Open,
        Ok(Some(r)) => Gate::Expr(r.to_string()),
    }
}

/// A record write checked and prepared outside the writer thread (rules resolved, passwords
/// hashed, old passwords verified): everything its writer job needs.
pub struct WriteOp {
    pub kind: OpKind,
    pub collection: Arc<Collection>,
    pub id: Option<String>,
    pub input: Record,
    hash: Option<String>,
    access: Access,
    create: Gate,
    update: Gate,
    delete: Gate,
    request: Value,
}

/// Prepares a write: resolves the collection, refuses forbidden operations with 403, hashes a
/// new password and checks a regular caller's `oldPassword`.
#[allow(clippy::too_many_arguments)]
pub async fn prepare_op(
    st: &AppState,
    ip: &str,
    auth: &Auth,
    method: &Method,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    kind: OpKind,
    coll: &str,
    id: Option<String>,
    input: Record,
) -> ApiResult<WriteOp> {
    let schema = st.store.schema();
    let c = collection(&schema, coll)?;
    // A view's records are computed from other collections: nothing to write, for anyone.
    if c.is_view() {
        return Err(ApiError::bad_request("Unsupported collection type."));
    }
    let (create, update, delete) = (
        gate(auth, &c.create_rule),
        gate(auth, &c.update_rule),
        gate(auth, &c.delete_rule),
    );
    let needed = match kind {
        OpKind::Create => vec![&create],
        OpKind::Update => vec![&update],
        OpKind::Delete => vec![&delete],
        OpKind::Upsert => vec![],
    };
    if needed.iter().any(|g| matches!(g, Gate::Forbidden)) {
        return Err(ApiError::forbidden());
    }
    let input = if auth.is_superuser() {
        input
    } else {
        without_hidden_fields(&c, input)
    };
    if kind == OpKind::Create && !auth.is_superuser() && password_too_long(&c, &input) {
        // PocketBase exports a non-superuser's new record for its create-rule check before
        // validating it, and bcrypt's refusal there fails the request with no field errors.
        return Err(ApiError::bad_request("Failed to create record."));
    }
    let access = access_of(auth);
    if access == Access::Regular && matches!(kind, OpKind::Update | OpKind::Upsert) {
        let target = id
            .clone()
            .or_else(|| input.get("id").and_then(Value::as_str).map(String::from));
        if let Some(target) = target {
            check_old_password(st, ip, &c, &target, &input).await?;
        }
    }
    let hash = if kind == OpKind::Delete {
        None
    } else {
        hash_password(st, ip, &c, &input).await?
    };
    let body = (kind != OpKind::Delete).then_some(&input);
    // The `@request` object is only read by expression rules; skip building it otherwise.
    let needs_request = [&create, &update, &delete]
        .iter()
        .any(|g| matches!(g, Gate::Expr(_)));
    let request = if needs_request {
        request_info(auth, method, q, headers, body)
    } else {
        Value::Null
    };
    Ok(WriteOp {
        kind,
        collection: c,
        id,
        input,
        hash,
        access,
        create,
        update,
        delete,
        request,
    })
}

/// Applies a gate inside the job: an expression must match record `id` (as stored now).
fn pass(
    ctx: &WriteCtx,
    op: &WriteOp,
    gate: &Gate,
    id: &str,
    missing: StoreError,
) -> Result<(), StoreError> {
    match gate {
        Gate::Forbidden => Err(StoreError::Forbidden),
        Gate::Open => Ok(()),
        Gate::Expr(rule) => {
            let c = ctx
                .schema
                .get(&op.collection.id)
                .cloned()
                .ok_or(StoreError::NotFound)?;
            match rule_condition(&ctx.schema, &c, rule, &op.request)? {
                Some((sql, params)) if !records::matches(ctx.conn, &c, id, &sql, &params)? => {
                    Err(missing)
                }
                _ => Ok(()),
            }
        }
    }
}

/// Runs a prepared write inside a writer job. Returns the written record (`None` for deletes).
pub fn run_op(ctx: &mut WriteCtx, op: &WriteOp) -> Result<Option<Record>, StoreError> {
    let cid = op.collection.id.clone();
    let mut kind = op.kind;
    let body_id = op.input.get("id").and_then(Value::as_str).map(String::from);
    let id = op.id.clone().or(body_id);
    if kind == OpKind::Upsert {
        let c = ctx.schema.get(&cid).cloned().ok_or(StoreError::NotFound)?;
        let exists = match &id {
            Some(id) => records::get(ctx.conn, &c, id)?.is_some(),
            None => false,
        };
        kind = if exists {
            OpKind::Update
        } else {
            OpKind::Create
        };
    }
    match kind {
        OpKind::Create => {
            if matches!(op.create, Gate::Forbidden) {
                return Err(StoreError::Forbidden);
            }
            let rec = records::create(ctx, &cid, &op.input, op.hash.clone(), op.access)?;
            let new_id = rec
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            pass(
                ctx,
                op,
                &op.create,
                &new_id,
                StoreError::BadRequest("Failed to create record.".into()),
            )?;
            Ok(Some(rec))
        }
        OpKind::Update | OpKind::Upsert => {
            let id = id.ok_or(StoreError::NotFound)?;
            pass(ctx, op, &op.update, &id, StoreError::NotFound)?;
            records::update(ctx, &cid, &id, &op.input, op.hash.clone(), op.access).map(Some)
        }
        OpKind::Delete => {
            let id = id.ok_or(StoreError::NotFound)?;
            pass(ctx, op, &op.delete, &id, StoreError::NotFound)?;
            records::delete(ctx, &cid, &id).map(|_| None)
        }
    }
}

async fn write_one(
    st: &AppState,
    op: WriteOp,
    action: &'static str,
    q: &HashMap<String, String>,
) -> ApiResult<(Arc<Collection>, Option<Record>)> {
    let concern = super::sync::Concern::from_query(q)?;
    let c = op.collection.clone();
    let (rec, seqs) = st
        .store
        .write(move |ctx| {
            let rec = run_op(ctx, &op)?;
            // The outbox rows of this write, so the answer can wait for them.
            let seqs = ctx.capture()?;
            Ok((rec, seqs))
        })
        .await
        .map_err(|e| ApiError::from_store(e, action))?;
    super::sync::wait_for(st, concern, &seqs).await?;
    Ok((c, rec))
}

// One extractor per request part, as axum handlers take them.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: Auth,
    method: Method,
    headers: HeaderMap,
    Path(coll): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    Input(input): Input,
) -> ApiResult<Response> {
    let op = prepare_op(
        &st,
        &ip,
        &auth,
        &method,
        &headers,
        &q,
        OpKind::Create,
        &coll,
        None,
        input,
    )
    .await?;
    let (c, rec) = write_one(&st, op, "Failed to create record.", &q).await?;
    respond_record(&st, c, rec.unwrap_or_default(), auth, method, headers, q).await
}

// One extractor per request part, as axum handlers take them.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: Auth,
    method: Method,
    headers: HeaderMap,
    Path((coll, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Input(input): Input,
) -> ApiResult<Response> {
    let op = prepare_op(
        &st,
        &ip,
        &auth,
        &method,
        &headers,
        &q,
        OpKind::Update,
        &coll,
        Some(id),
        input,
    )
    .await?;
    let (c, rec) = write_one(&st, op, "Failed to update record.", &q).await?;
    respond_record(&st, c, rec.unwrap_or_default(), auth, method, headers, q).await
}

pub async fn delete(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: Auth,
    method: Method,
    headers: HeaderMap,
    Path((coll, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<StatusCode> {
    let op = prepare_op(
        &st,
        &ip,
        &auth,
        &method,
        &headers,
        &q,
        OpKind::Delete,
        &coll,
        Some(id),
        Record::new(),
    )
    .await?;
    write_one(&st, op, "Failed to delete record.", &q).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Answers a create/update with the stored record as the caller may see it (expanding on a
/// reader when asked; otherwise straight from the written values).
pub async fn respond_record(
    st: &AppState,
    c: Arc<Collection>,
    rec: Record,
    auth: Auth,
    method: Method,
    headers: HeaderMap,
    q: HashMap<String, String>,
) -> ApiResult<Response> {
    let needs_reader = q.get("expand").is_some_and(|e| !e.trim().is_empty());
    if !needs_reader {
        let schema = st.store.schema();
        let mut v = present::record(&schema, &c, rec, &auth);
        if let Some(p) = fields_picker(&q)? {
            v = p.apply(v);
        }
        return Ok(Json(v).into_response());
    }
    let request = request_info(&auth, &method, &q, &headers, None);
    let v = st
        .store
        .read(move |conn, schema| {
            let mut shown = show(conn, schema, &c, vec![rec], &auth, &request, &q)?;
            shown.pop().ok_or(StoreError::NotFound)
        })
        .await
        .map_err(ApiError::from)?;
    Ok(Json(v).into_response())
}
