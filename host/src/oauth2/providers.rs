//! The providers Syncbase knows, with PocketBase's defaults (endpoints, scopes, PKCE, display
//! name) and how each one's user JSON maps to an [`AuthUser`].

use serde_json::{Map, Value};

use super::AuthUser;

/// How a provider's user JSON reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Oidc,
    Google,
    Github,
    Gitlab,
    Discord,
}

/// A provider's built-in defaults.
#[derive(Debug)]
pub struct Spec {
    pub name: &'static str,
    pub display_name: &'static str,
    pub auth_url: &'static str,
    pub token_url: &'static str,
    pub user_info_url: &'static str,
    pub scopes: &'static [&'static str],
    pub pkce: bool,
    pub profile: Profile,
}

const fn oidc(name: &'static str) -> Spec {
    Spec {
        name,
        display_name: "OIDC",
        auth_url: "",
        token_url: "",
        user_info_url: "",
        scopes: &["openid", "email", "profile"],
        pkce: true,
        profile: Profile::Oidc,
    }
}

static SPECS: &[Spec] = &[
    oidc("oidc"),
    oidc("oidc2"),
    oidc("oidc3"),
    Spec {
        name: "google",
        display_name: "Google",
        auth_url: "https://accounts.google.com/o/oauth2/v2/auth",
        token_url: "https://oauth2.googleapis.com/token",
        user_info_url: "https://www.googleapis.com/oauth2/v3/userinfo",
        scopes: &[
            "https://www.googleapis.com/auth/userinfo.profile",
            "https://www.googleapis.com/auth/userinfo.email",
        ],
        pkce: true,
        profile: Profile::Google,
    },
    Spec {
        name: "github",
        display_name: "GitHub",
        auth_url: "https://github.com/login/oauth/authorize",
        token_url: "https://github.com/login/oauth/access_token",
        user_info_url: "https://api.github.com/user",
        scopes: &["read:user", "user:email"],
        pkce: true,
        profile: Profile::Github,
    },
    Spec {
        name: "gitlab",
        display_name: "GitLab",
        auth_url: "https://gitlab.com/oauth/authorize",
        token_url: "https://gitlab.com/oauth/token",
        user_info_url: "https://gitlab.com/api/v4/user",
        scopes: &["read_user"],
        pkce: true,
        profile: Profile::Gitlab,
    },
    Spec {
        name: "discord",
        display_name: "Discord",
        auth_url: "https://discord.com/api/oauth2/authorize",
        token_url: "https://discord.com/api/oauth2/token",
        user_info_url: "https://discord.com/api/users/@me",
        scopes: &["identify", "email"],
        pkce: true,
        profile: Profile::Discord,
    },
];

/// The built-in defaults of provider `name`.
pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Whether `name` is a provider Syncbase can sign in with.
pub fn known(name: &str) -> bool {
    spec(name).is_some()
}

fn s(raw: &Map<String, Value>, key: &str) -> String {
    match raw.get(key) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Go's `cast.ToBool`: true, "true", "1", 1 …
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "t"),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

/// A provider's user JSON as an [`AuthUser`] (tokens filled in by the caller).
pub fn map_user(profile: Profile, raw: &Map<String, Value>) -> AuthUser {
    let mut u = AuthUser::default();
    match profile {
        Profile::Oidc | Profile::Google => {
            u.id = s(raw, "sub");
            u.name = s(raw, "name");
            u.username = s(raw, "preferred_username");
            u.avatar_url = s(raw, "picture");
            if truthy(raw.get("email_verified")) {
                u.email = s(raw, "email");
            }
        }
        Profile::Github => {
            u.id = s(raw, "id");
            u.name = s(raw, "name");
            u.username = s(raw, "login");
            u.avatar_url = s(raw, "avatar_url");
        }
        Profile::Gitlab => {
            u.id = s(raw, "id");
            u.name = s(raw, "name");
            u.username = s(raw, "username");
            u.avatar_url = s(raw, "avatar_url");
            if !s(raw, "confirmed_at").is_empty() {
                u.email = s(raw, "email");
            }
        }
        Profile::Discord => {
            u.id = s(raw, "id");
            u.username = s(raw, "username");
            let global = s(raw, "global_name");
            u.name = if global.is_empty() {
                u.username.clone()
            } else {
                global
            };
            let avatar = s(raw, "avatar");
            if !avatar.is_empty() {
                u.avatar_url = format!("https://cdn.discordapp.com/avatars/{}/{avatar}.png", u.id);
            }
            if truthy(raw.get("verified")) {
                u.email = s(raw, "email");
            }
        }
    }
    u
}

/// GitHub's primary verified email (its user JSON has none when the address is private); ""
/// when the token may not read it.
pub async fn github_primary_email(http: &reqwest::Client, access_token: &str) -> String {
    let Ok(Value::Array(emails)) =
        super::get_json(http, "https://api.github.com/user/emails", access_token).await
    else {
        return String::new();
    };
    emails
        .iter()
        .filter_map(Value::as_object)
        .find(|e| truthy(e.get("primary")) && truthy(e.get("verified")))
        .map(|e| s(e, "email"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_vouched_emails_are_taken() {
        let raw = |v: Value| v.as_object().cloned().unwrap_or_default();
        let u = map_user(
            Profile::Oidc,
            &raw(json!({"sub": "u1", "name": "Ann", "email": "a@x.io", "email_verified": "true"})),
        );
        assert_eq!((u.id.as_str(), u.email.as_str()), ("u1", "a@x.io"));
        let u = map_user(Profile::Oidc, &raw(json!({"sub": "u1", "email": "a@x.io"})));
        assert_eq!(u.email, "");
        let u = map_user(Profile::Github, &raw(json!({"id": 42, "login": "ann"})));
        assert_eq!((u.id.as_str(), u.username.as_str()), ("42", "ann"));
    }
}
