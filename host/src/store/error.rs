//! The store's error type.

use crate::filter::FilterError;
use crate::records::validate::FieldErrors;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Request `index` of a batch failed; the whole batch was rolled back.
    #[error("batch request {index} failed: {source}")]
    Batch {
        index: usize,
        source: Box<StoreError>,
    },
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("{0}")]
    BadRequest(String),
    /// A validation failure with PocketBase's nested error data (e.g. `fields.2.name`).
    #[error("{message}")]
    Invalid {
        message: String,
        data: serde_json::Value,
    },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(String),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("the store is closed")]
    Closed,
    /// A plugin this write or event needs could not run on this node right now (no free
    /// instance slot). Not the event's fault: the write fails and can be retried, and the
    /// fold retries its batch rather than applying a default another node would not.
    #[error("plugin unavailable on this node: {0}")]
    Unavailable(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether SQLite found a file that is not a database where it expected one.
    pub fn is_not_a_database(&self) -> bool {
        matches!(self, StoreError::Sql(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::NotADatabase)
    }

    /// A validation error for one field.
    pub fn field(name: &str, code: &str, message: &str) -> StoreError {
        let mut errs = FieldErrors::new();
        errs.insert(
            name.to_string(),
            crate::records::validate::FieldError {
                code: code.to_string(),
                message: message.to_string(),
                params: None,
            },
        );
        StoreError::Validation(errs)
    }
}
