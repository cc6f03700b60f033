//! Who is calling and what they may see: the principal behind a request's token, API rules
//! turned into SQL conditions, and how a record is presented to a viewer. Shared by the HTTP
//! API, realtime delivery and rooms, so none of them reaches into another for it. Knows
//! nothing of HTTP frameworks, wasmtime or NATS.

mod excerpt;
pub mod expand;
pub mod present;
mod principal;
pub mod rules;

pub use principal::{Auth, AuthCache, authenticate, authenticate_file};

/// Why a caller may not do something. The HTTP API maps it to PocketBase's 401 / 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No valid token: sign in first (401).
    #[error("the request requires valid authorization")]
    Unauthenticated,
    /// Signed in, but this caller may not (403).
    #[error("only superusers can perform this action")]
    Forbidden,
}
