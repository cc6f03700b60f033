//! `POST /api/sql` (superusers): PocketBase's SQL console. A query that only reads runs on a
//! reader; one that writes runs as one writer job on a single node, and is refused on a
//! replicating node (see `store/sql.rs`: writes must go through the log).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use crate::access::Auth;
use crate::store::sql::SqlError;

/// Longest query accepted, in characters (PocketBase's limit).
const MAX_QUERY: usize = 5000;

fn invalid(code: &str, message: &str, extra: Option<Value>) -> ApiError {
    let mut item = json!({"code": code, "message": message});
    if let Some(params) = extra {
        item["params"] = params;
    }
    ApiError::bad_request("An error occurred while validating the submitted data.")
        .with_data(json!({"query": item}))
}

pub async fn run(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    auth.require_superuser()?;
    let query = match body.get("query") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "An error occurred while loading the submitted data.",
            ));
        }
    };
    if query.trim().is_empty() {
        return Err(invalid("validation_required", "Cannot be blank.", None));
    }
    if query.chars().count() > MAX_QUERY {
        return Err(invalid(
            "validation_length_too_long",
            &format!("The length must be no more than {MAX_QUERY}."),
            Some(json!({"max": MAX_QUERY, "min": 0})),
        ));
    }
    let result = st
        .store
        .run_sql(query, st.sync.is_some())
        .await
        .map_err(|e| match e {
            SqlError::Failed(raw) => {
                ApiError::bad_request(format!("Failed to execute query. Raw error:\n{raw}."))
            }
            SqlError::Refused(reason) => ApiError::bad_request(reason),
            SqlError::Store(e) => ApiError::from_store(e, "Failed to execute query."),
        })?;
    Ok(Json(serde_json::to_value(result).unwrap_or_default()))
}
