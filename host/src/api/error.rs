//! PocketBase's error JSON (`{status, message, data}`) for every failure the API returns.
//! Store and filter errors are mapped here explicitly; internal details are logged, not sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::access::Denied;
use crate::filter::FilterError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub data: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            data: json!({}),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "The requested resource wasn't found.",
        )
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "The request requires valid record authorization token.",
        )
    }
    pub fn forbidden() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Only superusers can perform this action.",
        )
    }
    pub fn with_data(mut self, data: Value) -> ApiError {
        self.data = data;
        self
    }

    /// Maps a store failure; `action` is the message for validation failures
    /// (e.g. "Failed to create record.").
    pub fn from_store(e: StoreError, action: &str) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::Forbidden => ApiError::forbidden(),
            StoreError::Batch { source, .. } => ApiError::from_store(*source, action),
            StoreError::Validation(errs) => ApiError::bad_request(action)
                .with_data(serde_json::to_value(errs).unwrap_or_else(|_| json!({}))),
            StoreError::Invalid { message, data } => ApiError::bad_request(message).with_data(data),
            StoreError::BadRequest(m) => ApiError::bad_request(m),
            StoreError::Filter(f) => ApiError::from(f),
            StoreError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The server is shutting down.",
            ),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "a plugin had no instance for a write");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "A plugin this write needs is busy on this node; try again.",
                )
            }
            other => {
                tracing::error!(error = %other, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong while processing your request.",
                )
            }
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> ApiError {
        match d {
            Denied::Unauthenticated => ApiError::unauthorized(),
            Denied::Forbidden => ApiError::forbidden(),
        }
    }
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> ApiError {
        match e {
            FilterError::Forbidden(m) => {
                ApiError::new(StatusCode::FORBIDDEN, format!("Forbidden filter: {m}."))
            }
            other => ApiError::bad_request(format!("Invalid filter or sort: {other}.")),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::from_store(e, "Failed to process the request.")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"status": self.status.as_u16(), "message": self.message, "data": self.data});
        let mut resp = (self.status, Json(body)).into_response();
        // The request log records what failed (`api/logs.rs`).
        resp.extensions_mut().insert(super::logs::LoggedError {
            message: self.message,
            data: self.data,
        });
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
