//! Password hashing with bcrypt, the hash PocketBase stores, so data moves between the two.
//! Hashing is deliberately slow: callers run it on a blocking thread, never on the writer.

/// bcrypt cost used for new hashes (PocketBase uses bcrypt's default, 10).
pub const COST: u32 = 10;

pub fn hash(password: &str) -> String {
    bcrypt::hash(password, COST).unwrap_or_default()
}

/// A hash with an explicit cost (PocketBase hashes one-time passwords with cost 8: they live
/// minutes, and every sign-in checks one).
pub fn hash_with_cost(password: &str, cost: u32) -> String {
    bcrypt::hash(password, cost).unwrap_or_default()
}

pub fn verify(password: &str, hash: &str) -> bool {
    !hash.is_empty() && bcrypt::verify(password, hash).unwrap_or(false)
}

/// Spends the time of one real verification, for unknown identities (no timing oracle).
pub fn verify_dummy(password: &str) -> bool {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash("not-a-real-password"));
    verify(password, &DUMMY)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_verify_only_the_right_password() {
        let h = super::hash("correct horse");
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("wrong horse", &h));
        assert!(!super::verify("x", ""));
    }
}
