//! OAuth2 sign-in against external providers, as PocketBase's `tools/auth` does it: the
//! providers Syncbase knows (the generic OpenID Connect `oidc`, `oidc2`, `oidc3`, and Google,
//! GitHub, GitLab, Discord) with their default endpoints and scopes, the authorization URL with
//! PKCE, the code exchange at the token endpoint, and the provider's user mapped to an
//! [`AuthUser`] — whose `email` is set only when the provider vouches for it.
//!
//! Knows nothing of records or HTTP handlers: `api/auth_oauth2.rs` links the user to a record.

mod idtoken;
mod providers;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use providers::{Profile, Spec, known, spec};

use crate::store::schema::OAuth2Provider;

/// Why a sign-in with a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuth2Error {
    #[error("unknown provider {0:?}")]
    UnknownProvider(String),
    #[error("the provider could not be reached: {0}")]
    Http(String),
    #[error("the provider answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the provider's answer is not usable: {0}")]
    BadAnswer(String),
    #[error("invalid id_token: {0}")]
    IdToken(String),
}

/// The HTTP client for provider calls (TLS with the system's roots, bounded time).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// The tokens the provider issued for a code.
#[derive(Debug, Clone, Default)]
pub struct Token {
    pub access_token: String,
    pub refresh_token: String,
    /// Unix seconds, 0 when the provider gave no lifetime.
    pub expiry: i64,
    pub id_token: String,
}

/// The provider's user, PocketBase's `AuthUser` (the `meta` of an OAuth2 sign-in).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthUser {
    pub id: String,
    pub name: String,
    pub username: String,
    /// The verified email, or "" when the provider does not vouch for one.
    pub email: String,
    pub avatar_url: String,
    pub raw_user: Map<String, Value>,
    pub access_token: String,
    pub refresh_token: String,
    pub expiry: String,
}

impl AuthUser {
    /// The JSON PocketBase answers as `meta` (before `isNew` is added).
    pub fn to_meta(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "username": self.username,
            "email": self.email,
            "avatarURL": self.avatar_url,
            "avatarUrl": self.avatar_url,
            "rawUser": self.raw_user,
            "accessToken": self.access_token,
            "refreshToken": self.refresh_token,
            "expiry": self.expiry,
        })
    }
}

/// A provider configured on a collection, its defaults filled in.
#[derive(Debug, Clone)]
pub struct Provider {
    pub spec: &'static Spec,
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    pub auth_url: String,
    pub token_url: String,
    pub user_info_url: String,
    pub display_name: String,
    pub pkce: bool,
    pub extra: Map<String, Value>,
}

/// The S256 PKCE challenge of a verifier.
pub fn s256_challenge(verifier: &str) -> String {
    B64.encode(Sha256::digest(verifier.as_bytes()))
}

fn or_default(configured: &str, default: &str) -> String {
    if configured.is_empty() {
        default.to_string()
    } else {
        configured.to_string()
    }
}

impl Provider {
    pub fn from_config(cfg: &OAuth2Provider) -> Result<Provider, OAuth2Error> {
        let spec = spec(&cfg.name).ok_or_else(|| OAuth2Error::UnknownProvider(cfg.name.clone()))?;
        Ok(Provider {
            spec,
            name: cfg.name.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            auth_url: or_default(&cfg.auth_url, spec.auth_url),
            token_url: or_default(&cfg.token_url, spec.token_url),
            user_info_url: or_default(&cfg.user_info_url, spec.user_info_url),
            display_name: or_default(&cfg.display_name, spec.display_name),
            pkce: cfg.pkce.unwrap_or(spec.pkce),
            extra: cfg.extra.clone().unwrap_or_default(),
        })
    }

    /// The authorization URL for `state` (with the PKCE challenge when given), ending in an
    /// empty `redirect_uri=` for the client to complete, as PocketBase lists it.
    pub fn authorization_url(&self, state: &str, challenge: Option<&str>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("client_id", &self.client_id);
        if let Some(ch) = challenge {
            q.append_pair("code_challenge", ch);
            q.append_pair("code_challenge_method", "S256");
        }
        q.append_pair("response_type", "code");
        q.append_pair("scope", &self.spec.scopes.join(" "));
        q.append_pair("state", state);
        let sep = if self.auth_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}{}&redirect_uri=", self.auth_url, q.finish())
    }

    /// Trades an authorization code for tokens. Client credentials go in a Basic header first
    /// and, if the provider refuses that, in the form (golang.org/x/oauth2's auto-detection).
    pub async fn exchange(
        &self,
        http: &reqwest::Client,
        code: &str,
        verifier: &str,
        redirect_url: &str,
    ) -> Result<Token, OAuth2Error> {
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
        ];
        if !redirect_url.is_empty() {
            form.push(("redirect_uri", redirect_url.to_string()));
        }
        if self.pkce && !verifier.is_empty() {
            form.push(("code_verifier", verifier.to_string()));
        }
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = http
            .post(&self.token_url)
            .header("accept", "application/json")
            .basic_auth(enc(&self.client_id), Some(enc(&self.client_secret)))
            .form(&form);
        let answer = match token_call(basic).await {
            Ok(t) => Ok(t),
            Err(OAuth2Error::Refused { .. }) => {
                let mut in_params = form.clone();
                in_params.push(("client_id", self.client_id.clone()));
                in_params.push(("client_secret", self.client_secret.clone()));
                let req = http
                    .post(&self.token_url)
                    .header("accept", "application/json")
                    .form(&in_params);
                token_call(req).await
            }
            Err(e) => Err(e),
        }?;
        if answer.access_token.is_empty() {
            return Err(OAuth2Error::BadAnswer("no access_token".into()));
        }
        Ok(answer)
    }

    /// The provider's user for `token`.
    pub async fn user(
        &self,
        http: &reqwest::Client,
        token: &Token,
    ) -> Result<AuthUser, OAuth2Error> {
        let raw = if self.spec.profile == Profile::Oidc && self.user_info_url.is_empty() {
            idtoken::claims(http, &token.id_token, &self.client_id, &self.extra).await?
        } else {
            get_json(http, &self.user_info_url, &token.access_token).await?
        };
        let raw = match raw {
            Value::Object(m) => m,
            _ => {
                return Err(OAuth2Error::BadAnswer(
                    "the user is not a JSON object".into(),
                ));
            }
        };
        let mut user = providers::map_user(self.spec.profile, &raw);
        if self.spec.profile == Profile::Github && user.email.is_empty() {
            user.email = providers::github_primary_email(http, &token.access_token).await;
        }
        user.raw_user = raw;
        user.access_token = token.access_token.clone();
        user.refresh_token = token.refresh_token.clone();
        if token.expiry > 0 {
            user.expiry = chrono::DateTime::from_timestamp(token.expiry, 0)
                .map(|d| crate::records::validate::format_date(&d))
                .unwrap_or_default();
        }
        Ok(user)
    }
}

async fn token_call(req: reqwest::RequestBuilder) -> Result<Token, OAuth2Error> {
    let res = req
        .send()
        .await
        .map_err(|e| OAuth2Error::Http(e.to_string()))?;
    let status = res.status();
    let body = res
        .text()
        .await
        .map_err(|e| OAuth2Error::Http(e.to_string()))?;
    if !status.is_success() {
        return Err(OAuth2Error::Refused {
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        });
    }
    // JSON normally; some providers answer form-encoded.
    let map: Map<String, Value> = match serde_json::from_str::<Value>(&body) {
        Ok(Value::Object(m)) => m,
        _ => url::form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect(),
    };
    if let Some(err) = map.get("error").and_then(Value::as_str) {
        return Err(OAuth2Error::Refused {
            status: status.as_u16(),
            body: err.to_string(),
        });
    }
    let s = |k: &str| {
        map.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let expires_in = map
        .get("expires_in")
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(0);
    Ok(Token {
        access_token: s("access_token"),
        refresh_token: s("refresh_token"),
        id_token: s("id_token"),
        expiry: if expires_in > 0 {
            chrono::Utc::now().timestamp() + expires_in
        } else {
            0
        },
    })
}

/// GET `url` with the bearer token; the JSON answer.
pub(crate) async fn get_json(
    http: &reqwest::Client,
    url: &str,
    access_token: &str,
) -> Result<Value, OAuth2Error> {
    let res = http
        .get(url)
        .bearer_auth(access_token)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| OAuth2Error::Http(e.to_string()))?;
    let status = res.status();
    let body = res
        .text()
        .await
        .map_err(|e| OAuth2Error::Http(e.to_string()))?;
    if status.as_u16() >= 400 {
        return Err(OAuth2Error::Refused {
            status: status.as_u16(),
            body: body.chars().take(500).collect(),
        });
    }
    serde_json::from_str(&body).map_err(|e| OAuth2Error::BadAnswer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorization_url_carries_pkce_and_an_open_redirect() {
        let cfg = OAuth2Provider {
            name: "oidc".into(),
            client_id: "app".into(),
            client_secret: "s".into(),
            auth_url: "http://idp/authorize".into(),
            ..Default::default()
        };
        let p = Provider::from_config(&cfg).expect("known");
        let url = p.authorization_url("st", Some("ch"));
        assert_eq!(
            url,
            "http://idp/authorize?client_id=app&code_challenge=ch&code_challenge_method=S256&response_type=code&scope=openid+email+profile&state=st&redirect_uri="
        );
        // RFC 7636's example verifier and challenge.
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let unknown = OAuth2Provider {
            name: "nope".into(),
            ..Default::default()
        };
        assert!(matches!(
            Provider::from_config(&unknown),
            Err(OAuth2Error::UnknownProvider(_))
        ));
    }
}
