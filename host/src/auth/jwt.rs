//! HS256 JSON Web Tokens, as PocketBase issues them: `{id, type, collectionId, refreshable, exp}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The claims of an auth token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Claims {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub collection_id: String,
    #[serde(default)]
    pub refreshable: bool,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("invalid signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// Signs `claims` (an auth token's [`Claims`], or the claims of another kind of token) with
/// `key`.
pub fn sign<T: Serialize>(claims: &T, key: &[u8]) -> String {
    let header = B64.encode(HEADER);
    let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = mac(key, signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(sig))
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Reads the claims without verifying: used to find which record and collection signed it.
pub fn peek(token: &str) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Reads the claims as a JSON object without verifying (which record signed it, which kind).
pub fn peek_map(token: &str) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Verifies the signature with `key` and the `exp` claim against `now` (unix seconds), and
/// returns the claims as a JSON object: for tokens other than auth tokens, whose claims vary
/// by kind (`email`, `newEmail`).
pub fn verify_map(
    token: &str,
    key: &[u8],
    now: i64,
) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    check_signature(token, key)?;
    let claims = peek_map(token)?;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .ok_or(TokenError::Malformed)?;
    if exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Verifies the signature with `key` and the expiry against `now` (unix seconds).
pub fn verify(token: &str, key: &[u8], now: i64) -> Result<Claims, TokenError> {
    check_signature(token, key)?;
    let claims = peek(token)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

fn check_signature(token: &str, key: &[u8]) -> Result<(), TokenError> {
    let (signing_input, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let header = signing_input
        .split('.')
        .next()
        .ok_or(TokenError::Malformed)?;
    let header = B64.decode(header).map_err(|_| TokenError::Malformed)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(TokenError::BadSignature);
    }
    let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
    let mut m = HmacSha256::new_from_slice(key).map_err(|_| TokenError::BadSignature)?;
    m.update(signing_input.as_bytes());
    m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            id: "abc".into(),
            kind: "auth".into(),
            collection_id: "c1".into(),
            refreshable: true,
            exp,
        }
    }

    #[test]
    fn signed_tokens_verify_and_forgeries_do_not() {
        let t = sign(&claims(2000), b"key");
        assert_eq!(verify(&t, b"key", 1000).expect("valid"), claims(2000));
        assert_eq!(verify(&t, b"other", 1000), Err(TokenError::BadSignature));
        assert_eq!(verify(&t, b"key", 3000), Err(TokenError::Expired));
        let forged = format!("{}x", t);
        assert!(verify(&forged, b"key", 1000).is_err());
        assert_eq!(verify("nope", b"key", 1000), Err(TokenError::Malformed));
    }

    #[test]
    fn action_tokens_verify_their_own_claims() {
        let claims =
            serde_json::json!({"id": "r1", "type": "passwordReset", "email": "a@b.c", "exp": 2000});
        let t = sign(&claims, b"tokenKey+secret");
        let got = verify_map(&t, b"tokenKey+secret", 1000).expect("valid");
        assert_eq!(got.get("email").and_then(|v| v.as_str()), Some("a@b.c"));
        assert_eq!(peek_map(&t).expect("peek")["type"], "passwordReset");
        // A new tokenKey (password or email changed) revokes it; so does time.
        assert_eq!(
            verify_map(&t, b"newTokenKey+secret", 1000),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify_map(&t, b"tokenKey+secret", 2000),
            Err(TokenError::Expired)
        );
        let no_exp = sign(&serde_json::json!({"id": "r1"}), b"k");
        assert_eq!(verify_map(&no_exp, b"k", 0), Err(TokenError::Malformed));
    }
}
