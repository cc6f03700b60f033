//! The collections API (superusers only): list, view, create, update, delete, import.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::sync::schema_write;
use crate::access::Auth;
use crate::replication::{CollectionRef, EventKind};
use crate::store::collections as ops;
use crate::store::schema::CollectionType;
use crate::store::{Collection, StoreError};

/// A collection as served: everything but the token signing secrets and the OAuth2 providers'
/// client secrets (PocketBase hides them the same way).
pub fn present(c: &Collection) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
    for key in [
        "authToken",
        "passwordResetToken",
        "emailChangeToken",
        "verificationToken",
        "fileToken",
    ] {
        if let Some(tok) = v.get_mut(key).and_then(Value::as_object_mut) {
            tok.remove("secret");
        }
    }
    if let Some(Value::Array(providers)) = v.pointer_mut("/oauth2/providers") {
        for p in providers.iter_mut().filter_map(Value::as_object_mut) {
            p.remove("clientSecret");
        }
    }
    v
}

pub async fn list(
    State(st): State<AppState>,
    auth: Auth,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let schema = st.store.schema();
    let mut items: Vec<Value> = schema.all().iter().map(|c| present(c)).collect();
    // A small subset of the record filter is enough here: exact name/type matches.
    if let Some(f) = q.get("filter").filter(|f| !f.trim().is_empty()) {
        let wanted: Vec<(String, String)> = f
            .split("&&")
            .filter_map(|part| {
                let (k, v) = part.split_once('=')?;
                Some((
                    k.trim().to_string(),
                    v.trim().trim_matches(|c| c == '\'' || c == '"').to_string(),
                ))
            })
            .collect();
        items.retain(|c| {
            wanted
                .iter()
                .all(|(k, v)| c.get(k).and_then(Value::as_str) == Some(v.as_str()))
        });
    }
    let per_page = q
        .get("perPage")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(30)
        .min(1000);
    let page = q
        .get("page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let total = items.len();
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    Ok(Json(json!({
        "page": page,
        "perPage": per_page,
        "totalItems": total,
        "totalPages": total.div_ceil(per_page),
        "items": page_items,
    })))
}

pub async fn view(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let schema = st.store.schema();
    let c = schema.get(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(present(c)))
}

pub async fn create(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let c = schema_write(
        &st,
        "Failed to create collection.",
        EventKind::CollectionCreate,
        move |ctx| ops::create(ctx, &body),
        describe,
    )
    .await?;
    Ok(Json(present(&applied(&st, c))))
}

pub async fn update(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let c = schema_write(
        &st,
        "Failed to update collection.",
        EventKind::CollectionUpdate,
        move |ctx| ops::update(ctx, &name, &body),
        describe,
    )
    .await?;
    Ok(Json(present(&applied(&st, c))))
}

pub async fn delete(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    schema_write(
        &st,
        "Failed to delete collection.",
        EventKind::CollectionDelete,
        move |ctx| ops::delete(ctx, &name),
        describe,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/collections/meta/validate`: checks a draft collection (the body, as it would be
/// sent to create or update) and answers 204, or 400 with PocketBase's error data (e.g.
/// `data.listRule` for a rule that does not parse). Nothing is written. Syncbase's own
/// endpoint: the dashboard checks API rules through it while they are typed.
pub async fn validate(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    let schema = st.store.schema();
    let action = match body.get("id").and_then(Value::as_str) {
        Some(id) if schema.get(id).is_some_and(|c| c.id == id) => "Failed to update collection.",
        _ => "Failed to create collection.",
    };
    st.store
        .read(move |conn, schema| ops::check(conn, schema, &body))
        .await
        .map_err(|e| ApiError::from_store(e, action))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn import(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    let Some(list) = body.get("collections").and_then(Value::as_array).cloned() else {
        return Err(ApiError::bad_request("Failed to import collections.").with_data(
            json!({"collections": {"code": "validation_required", "message": "Cannot be blank."}}),
        ));
    };
    let delete_missing = body
        .get("deleteMissing")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    schema_write(
        &st,
        "Failed to import collections.",
        EventKind::CollectionImport,
        move |ctx| ops::import(ctx, &list, delete_missing).map(|()| delete_missing),
        |delete_missing, ctx| {
            // The whole resulting schema: every node converges on it at this position.
            let collections: Vec<Value> = ctx
                .schema
                .all()
                .iter()
                .filter(|c| c.name != crate::store::sync::LOCAL_ONLY)
                .map(|c| serde_json::to_value(&**c).unwrap_or_default())
                .collect();
            (
                CollectionRef::default(),
                json!({"collections": collections, "deleteMissing": delete_missing}),
            )
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/collections/{c}/truncate`: deletes every record (cascades included) in one
/// writer job; on a replicating node each deletion replicates as a delete event.
pub async fn truncate(
    State(st): State<AppState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_superuser()?;
    let c = st
        .store
        .schema()
        .get(&name)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    if c.is_view() {
        return Err(ApiError::bad_request(
            "View collections cannot be truncated since they don't store their own records.",
        ));
    }
    st.store
        .write(move |ctx| crate::store::records::truncate(ctx, &c.id))
        .await
        .map_err(|e| match e {
            StoreError::BadRequest(_) | StoreError::Validation(_) => ApiError::bad_request(
                "Failed to truncate collection (most likely due to required cascade delete record references).",
            ),
            other => ApiError::from_store(other, "Failed to truncate collection."),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/collections/meta/scaffolds`: a new collection of each type with its defaults
/// (what the dashboard starts a "new collection" form from).
pub async fn scaffolds(State(_): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    // PocketBase names the auth indexes after a random id, the table name left empty.
    let index_id = crate::store::schema::random_string(10, crate::store::schema::LOWER_ALNUM);
    let [base, auth, view] = [
        CollectionType::Base,
        CollectionType::Auth,
        CollectionType::View,
    ]
    .map(|kind| ops::scaffold(kind, &index_id));
    Ok(Json(json!({
        "base": present(&base),
        "auth": present(&auth),
        "view": present(&view),
    })))
}

/// `POST /api/collections/meta/dry-run-view {"query": ...}` (PocketBase's experimental
/// preview for the dashboard's view editor): the fields a view of the query would have and
/// its first records. Runs on a reader; nothing is created.
pub async fn dry_run_view(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let query = body
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let preview = st
        .store
        .read(move |conn, schema| Ok(crate::store::views::preview(conn, schema, &query, 10)))
        .await?;
    let (fields, records) = preview.map_err(|e| {
        ApiError::bad_request(format!("Invalid view query. Raw error: \n{}.", e.message))
    })?;
    let mut temp = ops::scaffold(CollectionType::View, "");
    temp.name = format!(
        "temp_view_{}",
        crate::store::schema::random_string(5, crate::store::schema::ALNUM)
    );
    temp.id = crate::store::schema::collection_id(CollectionType::View, &temp.name);
    temp.fields = fields;
    let schema = st.store.schema();
    let sample: Vec<Value> = records
        .into_iter()
        .map(|r| crate::access::present::record(&schema, &temp, r, &auth))
        .collect();
    Ok(Json(json!({"fields": temp.fields, "sample": sample})))
}

/// The event data of a collection change: the collection exactly as validated, ids included.
fn describe(c: &Arc<Collection>, _: &crate::store::WriteCtx) -> (CollectionRef, Value) {
    (
        CollectionRef {
            id: c.id.clone(),
            name: c.name.clone(),
        },
        serde_json::to_value(&**c).unwrap_or_default(),
    )
}

/// The collection as the store holds it now (after a replicated change was applied).
fn applied(st: &AppState, c: Arc<Collection>) -> Arc<Collection> {
    st.store.schema().get(&c.id).cloned().unwrap_or(c)
}
