//! Authentication primitives: PocketBase-compatible HS256 JWTs and password hashing.
//! Tokens are signed with the record's `tokenKey` plus the collection's secret, so changing
//! either revokes every token issued before.

pub mod gate;
pub mod jwt;
pub mod password;
