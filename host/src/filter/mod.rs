//! STUB: replaced by the real implementation (being written in parallel).
use crate::store::schema::Collection;
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("{message} (at {pos})")]
    Syntax { pos: usize, message: String },
    #[error("unknown field {0:?}")]
    UnknownField(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
}
pub enum SqlParam {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}
pub trait CollectionLookup {
    fn collection(&self, name_or_id: &str) -> Option<&Collection>;
}
pub struct Query<'a> {
    pub lookup: &'a dyn CollectionLookup,
    pub collection: &'a Collection,
    pub request: Option<&'a serde_json::Value>,
    pub allow_request_refs: bool,
    pub allow_hidden: bool,
    pub now: chrono::DateTime<chrono::Utc>,
}
pub fn filter_sql(_src: &str, _q: &Query) -> Result<(String, Vec<SqlParam>), FilterError> {
    todo!()
}
pub fn sort_sql(_src: &str, _q: &Query) -> Result<String, FilterError> {
    todo!()
}
