//! The user of a generic OIDC provider configured without a `userInfoURL`: the claims of the
//! `id_token` from the token endpoint, checked as PocketBase checks them — `aud` must name the
//! client, `iat`/`exp`/`nbf` hold within a 5 minute leeway, `iss` must be one of
//! `extra.issuers` when given, and the RS256 signature must verify against `extra.jwksURL`
//! when given (the token came straight from the provider over TLS, so both are optional).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value};

use super::OAuth2Error;

const LEEWAY: i64 = 300;

fn bad(msg: impl Into<String>) -> OAuth2Error {
    OAuth2Error::IdToken(msg.into())
}

fn part(token: &str, i: usize) -> Result<Vec<u8>, OAuth2Error> {
    let p = token.split('.').nth(i).ok_or_else(|| bad("malformed"))?;
    B64.decode(p.trim_end_matches('='))
        .map_err(|_| bad("malformed"))
}

/// The checked claims of `id_token`.
pub async fn claims(
    http: &reqwest::Client,
    id_token: &str,
    client_id: &str,
    extra: &Map<String, Value>,
) -> Result<Value, OAuth2Error> {
    if id_token.is_empty() {
        return Err(bad("empty id_token"));
    }
    if id_token.split('.').count() != 3 {
        return Err(bad("malformed"));
    }
    let claims: Map<String, Value> =
        serde_json::from_slice(&part(id_token, 1)?).map_err(|_| bad("malformed claims"))?;
    let now = chrono::Utc::now().timestamp();
    let num = |k: &str| claims.get(k).and_then(Value::as_f64).map(|f| f as i64);
    if num("iat").is_some_and(|iat| iat > now + LEEWAY) {
        return Err(bad("issued in the future"));
    }
    if num("nbf").is_some_and(|nbf| nbf > now + LEEWAY) {
        return Err(bad("not valid yet"));
    }
    if num("exp").is_some_and(|exp| exp < now - LEEWAY) {
        return Err(bad("expired"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(client_id)),
        _ => false,
    };
    if !aud_ok {
        return Err(bad("aud does not name the client"));
    }
    let issuers: Vec<&str> = match extra.get("issuers") {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) if !one.is_empty() => vec![one.as_str()],
        _ => Vec::new(),
    };
    if !issuers.is_empty() {
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !issuers.contains(&iss) {
            return Err(bad(format!("iss must be one of {issuers:?}")));
        }
    }
    if let Some(jwks) = extra
        .get("jwksURL")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
    {
        verify_signature(http, id_token, jwks).await?;
    }
    Ok(Value::Object(claims))
}

/// Checks an RS256 signature against the provider's published keys.
async fn verify_signature(
    http: &reqwest::Client,
    token: &str,
    jwks_url: &str,
) -> Result<(), OAuth2Error> {
    let header: Map<String, Value> =
        serde_json::from_slice(&part(token, 0)?).map_err(|_| bad("malformed header"))?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(bad("only RS256 id_tokens can be verified"));
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let jwks: Value = http
        .get(jwks_url)
        .send()
        .await
        .map_err(|e| OAuth2Error::Http(e.to_string()))?
        .json()
        .await
        .map_err(|e| bad(format!("unreadable JWKS: {e}")))?;
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the JWKS has no keys"))?;
    let key = keys
        .iter()
        .find(|k| {
            k.get("kty").and_then(Value::as_str) == Some("RSA")
                && (kid.is_none() || k.get("kid").and_then(Value::as_str) == kid)
        })
        .ok_or_else(|| bad("no matching key in the JWKS"))?;
    let field = |k: &str| -> Result<Vec<u8>, OAuth2Error> {
        let v = key
            .get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| bad("bad JWK"))?;
        B64.decode(v.trim_end_matches('='))
            .map_err(|_| bad("bad JWK"))
    };
    let (n, e) = (field("n")?, field("e")?);
    let (signing_input, _) = token.rsplit_once('.').ok_or_else(|| bad("malformed"))?;
    let signature = part(token, 2)?;
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            signing_input.as_bytes(),
            &signature,
        )
        .map_err(|_| bad("signature does not verify"))
}
