//! The options of auth collections, in PocketBase's JSON shape: rules, password / OTP / MFA /
//! OAuth2 settings, the token kinds with their secrets and lifetimes, and the email templates.
//! Pure model, like `schema.rs` (which re-exports it).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::schema::{ALNUM, random_string};

/// Options carried by auth collections only, in PocketBase's shape (`authRule` … templates).
/// Options a stored collection predates (it was written by an older Syncbase) take their
/// defaults when read; a missing token secret is derived from the auth token's secret
/// ([`AuthOptions::secret`]), so every node that folded the same collection signs alike.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthOptions {
    #[serde(default)]
    pub auth_rule: Option<String>,
    #[serde(default)]
    pub manage_rule: Option<String>,
    #[serde(default = "AuthAlertConfig::default_enabled")]
    pub auth_alert: AuthAlertConfig,
    #[serde(default)]
    pub oauth2: OAuth2Config,
    pub password_auth: PasswordAuth,
    #[serde(default)]
    pub mfa: MfaConfig,
    #[serde(default)]
    pub otp: OtpConfig,
    pub auth_token: TokenConfig,
    #[serde(default = "TokenConfig::password_reset")]
    pub password_reset_token: TokenConfig,
    #[serde(default = "TokenConfig::email_change")]
    pub email_change_token: TokenConfig,
    #[serde(default = "TokenConfig::verification")]
    pub verification_token: TokenConfig,
    #[serde(default = "TokenConfig::file")]
    pub file_token: TokenConfig,
    #[serde(default = "EmailTemplate::verification")]
    pub verification_template: EmailTemplate,
    #[serde(default = "EmailTemplate::reset_password")]
    pub reset_password_template: EmailTemplate,
    #[serde(default = "EmailTemplate::confirm_email_change")]
    pub confirm_email_change_template: EmailTemplate,
}

/// The kinds of token an auth record can be issued, each signed with the record's `tokenKey`
/// plus its own collection secret (so rotating one secret revokes only that kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Auth,
    Verification,
    PasswordReset,
    EmailChange,
    File,
}

impl TokenKind {
    /// The `type` claim PocketBase puts in such a token.
    pub fn claim(self) -> &'static str {
        match self {
            TokenKind::Auth => "auth",
            TokenKind::Verification => "verification",
            TokenKind::PasswordReset => "passwordReset",
            TokenKind::EmailChange => "emailChange",
            TokenKind::File => "file",
        }
    }
}

impl AuthOptions {
    fn token(&self, kind: TokenKind) -> &TokenConfig {
        match kind {
            TokenKind::Auth => &self.auth_token,
            TokenKind::Verification => &self.verification_token,
            TokenKind::PasswordReset => &self.password_reset_token,
            TokenKind::EmailChange => &self.email_change_token,
            TokenKind::File => &self.file_token,
        }
    }

    /// The collection secret of a kind of token. A secret missing from the stored options (a
    /// collection written before the kind existed) is derived from the auth token's secret: a
    /// random default would differ from node to node.
    pub fn secret(&self, kind: TokenKind) -> String {
        let own = &self.token(kind).secret;
        if !own.is_empty() || kind == TokenKind::Auth {
            return own.clone();
        }
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{}:{}", self.auth_token.secret, kind.claim()));
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..50]
            .to_string()
    }

    /// Lifetime of a kind of token, in seconds.
    pub fn duration(&self, kind: TokenKind) -> i64 {
        self.token(kind).duration
    }

    /// The stored secrets a client cannot replace: the auth token's (it would let one mint
    /// tokens) and each OAuth2 provider's `clientSecret` sent empty (clients never see it, so
    /// they send providers back without it; matched by provider name).
    pub fn keep_secrets_of(&mut self, old: &AuthOptions) {
        self.auth_token.secret = old.auth_token.secret.clone();
        for p in &mut self.oauth2.providers {
            if p.client_secret.is_empty()
                && let Some(o) = old.oauth2.providers.iter().find(|o| o.name == p.name)
            {
                p.client_secret = o.client_secret.clone();
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenConfig {
    /// Collection-wide signing secret, combined with each record's tokenKey.
    #[serde(default)]
    pub secret: String,
    /// Token lifetime in seconds.
    pub duration: i64,
}

impl TokenConfig {
    fn new(duration: i64) -> TokenConfig {
        TokenConfig {
            secret: random_string(50, ALNUM),
            duration,
        }
    }

    /// Defaults for options missing from a stored collection: no secret of their own (see
    /// [`AuthOptions::secret`]).
    fn stored(duration: i64) -> TokenConfig {
        TokenConfig {
            secret: String::new(),
            duration,
        }
    }

    fn password_reset() -> TokenConfig {
        TokenConfig::stored(1800)
    }

    fn email_change() -> TokenConfig {
        TokenConfig::stored(1800)
    }

    fn verification() -> TokenConfig {
        TokenConfig::stored(86_400)
    }

    fn file() -> TokenConfig {
        TokenConfig::stored(180)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordAuth {
    pub enabled: bool,
    pub identity_fields: Vec<String>,
}

/// An email's subject and HTML body, with `{APP_NAME}`, `{APP_URL}`, `{TOKEN}`, `{OTP}`,
/// `{OTP_ID}`, `{RECORD:field}` placeholders.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EmailTemplate {
    pub subject: String,
    pub body: String,
}

impl EmailTemplate {
    fn action(subject: &str, intro: &str, path: &str, button: &str, ignore: &str) -> Self {
        EmailTemplate {
            subject: subject.into(),
            body: format!(
                "<p>Hello,</p>\n{intro}<p>\n  <a class=\"btn\" href=\"{{APP_URL}}/_/#/auth/{path}/{{TOKEN}}\" target=\"_blank\" rel=\"noopener\">{button}</a>\n</p>\n<p><i>{ignore}</i></p>\n<p>\n  Thanks,<br/>\n  {{APP_NAME}} team\n</p>"
            ),
        }
    }

    pub fn verification() -> Self {
        Self::action(
            "Verify your {APP_NAME} email",
            "<p>Thank you for joining us at {APP_NAME}.</p>\n<p>Click on the button below to verify your email address.</p>\n",
            "confirm-verification",
            "Verify",
            "If you didn't recently register, please ignore this email.",
        )
    }

    pub fn reset_password() -> Self {
        Self::action(
            "Reset your {APP_NAME} password",
            "<p>Click on the button below to reset your password.</p>\n",
            "confirm-password-reset",
            "Reset password",
            "If you didn't ask to reset your password, please ignore this email.",
        )
    }

    pub fn confirm_email_change() -> Self {
        Self::action(
            "Confirm your {APP_NAME} new email address",
            "<p>Click on the button below to confirm your new email address.</p>\n",
            "confirm-email-change",
            "Confirm new email",
            "If you didn't ask to change your email address, please ignore this email.",
        )
    }

    pub fn otp() -> Self {
        EmailTemplate {
            subject: "OTP for {APP_NAME}".into(),
            body: "<p>Hello,</p>\n<p>Your one-time password is: <strong>{OTP}</strong></p>\n<p><i>If you didn't ask for the one-time password, you can ignore this email.</i></p>\n<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>".into(),
        }
    }

    pub fn auth_alert() -> Self {
        EmailTemplate {
            subject: "Login from a new location".into(),
            body: "<p>Hello,</p>\n<p>We noticed a login to your {APP_NAME} account from a new location:</p>\n<p><em>{ALERT_INFO}</em></p>\n<p><strong>If this wasn't you, you should immediately change your {APP_NAME} account password to revoke access from all other locations.</strong></p>\n<p>If this was you, you may disregard this email.</p>\n<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthAlertConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "EmailTemplate::auth_alert")]
    pub email_template: EmailTemplate,
}

impl AuthAlertConfig {
    fn default_enabled() -> Self {
        AuthAlertConfig {
            enabled: true,
            email_template: EmailTemplate::auth_alert(),
        }
    }
}

/// One-time passwords sent by email (`request-otp` / `auth-with-otp`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OtpConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Seconds an OTP stays valid.
    #[serde(default = "OtpConfig::default_duration")]
    pub duration: i64,
    /// Digits in a generated password.
    #[serde(default = "OtpConfig::default_length")]
    pub length: i64,
    #[serde(default = "EmailTemplate::otp")]
    pub email_template: EmailTemplate,
}

impl OtpConfig {
    fn default_duration() -> i64 {
        180
    }
    fn default_length() -> i64 {
        8
    }
}

impl Default for OtpConfig {
    fn default() -> Self {
        OtpConfig {
            enabled: false,
            duration: 180,
            length: 8,
            email_template: EmailTemplate::otp(),
        }
    }
}

/// Multi-factor authentication: a second, different auth method within `duration` seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MfaConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "MfaConfig::default_duration")]
    pub duration: i64,
    /// Only records matching this rule need a second factor ("" = everyone).
    #[serde(default)]
    pub rule: String,
}

impl MfaConfig {
    fn default_duration() -> i64 {
        600
    }
}

impl Default for MfaConfig {
    fn default() -> Self {
        MfaConfig {
            enabled: false,
            duration: 600,
            rule: String::new(),
        }
    }
}

/// OAuth2 sign-in: the enabled providers and which record fields take the provider's data.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OAuth2Config {
    pub providers: Vec<OAuth2Provider>,
    pub mapped_fields: OAuth2MappedFields,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OAuth2MappedFields {
    pub id: String,
    pub name: String,
    pub username: String,
    #[serde(rename = "avatarURL")]
    pub avatar_url: String,
}

/// One provider's settings; empty URLs mean the provider's own defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OAuth2Provider {
    pub pkce: Option<bool>,
    pub name: String,
    pub client_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_secret: String,
    #[serde(rename = "authURL")]
    pub auth_url: String,
    #[serde(rename = "tokenURL")]
    pub token_url: String,
    #[serde(rename = "userInfoURL")]
    pub user_info_url: String,
    pub display_name: String,
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            auth_rule: Some(String::new()),
            manage_rule: None,
            auth_alert: AuthAlertConfig::default_enabled(),
            oauth2: OAuth2Config::default(),
            password_auth: PasswordAuth {
                enabled: true,
                identity_fields: vec!["email".into()],
            },
            mfa: MfaConfig::default(),
            otp: OtpConfig::default(),
            auth_token: TokenConfig::new(604_800),
            password_reset_token: TokenConfig::new(1800),
            email_change_token: TokenConfig::new(1800),
            verification_token: TokenConfig::new(86_400),
            file_token: TokenConfig::new(180),
            verification_template: EmailTemplate::verification(),
            reset_password_template: EmailTemplate::reset_password(),
            confirm_email_change_template: EmailTemplate::confirm_email_change(),
        }
    }
}

fn err(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message})
}

fn min_err(threshold: i64) -> Value {
    json!({"code": "validation_min_greater_equal_than_required",
           "message": format!("Must be no less than {threshold}."), "params": {"threshold": threshold}})
}

fn max_err(threshold: i64) -> Value {
    json!({"code": "validation_max_less_equal_than_required",
           "message": format!("Must be no greater than {threshold}."), "params": {"threshold": threshold}})
}

fn range(value: i64, min: i64, max: i64) -> Option<Value> {
    if value == 0 {
        Some(err("validation_required", "Cannot be blank."))
    } else if value < min {
        Some(min_err(min))
    } else if value > max {
        Some(max_err(max))
    } else {
        None
    }
}

fn template_errors(t: &EmailTemplate) -> Option<Value> {
    let mut m = Map::new();
    for (key, value) in [("subject", &t.subject), ("body", &t.body)] {
        if value.trim().is_empty() {
            m.insert(key.into(), err("validation_required", "Cannot be blank."));
        }
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

impl AuthOptions {
    /// PocketBase's checks of the auth options, as `{option: {field: error}}`; `known` says
    /// whether an OAuth2 provider name can be used.
    pub fn validate(&self, known: impl Fn(&str) -> bool) -> Map<String, Value> {
        let mut errors = Map::new();
        let mut put = |key: &str, inner: Map<String, Value>| {
            if !inner.is_empty() {
                errors.insert(key.into(), Value::Object(inner));
            }
        };
        for (key, tok) in [
            ("authToken", &self.auth_token),
            ("passwordResetToken", &self.password_reset_token),
            ("emailChangeToken", &self.email_change_token),
            ("verificationToken", &self.verification_token),
            ("fileToken", &self.file_token),
        ] {
            let mut m = Map::new();
            if let Some(e) = range(tok.duration, 10, 94_670_856) {
                m.insert("duration".into(), e);
            }
            put(key, m);
        }
        for (key, t) in [
            ("verificationTemplate", &self.verification_template),
            ("resetPasswordTemplate", &self.reset_password_template),
            (
                "confirmEmailChangeTemplate",
                &self.confirm_email_change_template,
            ),
        ] {
            if let Some(Value::Object(m)) = template_errors(t) {
                put(key, m);
            }
        }
        let mut otp = Map::new();
        if self.otp.enabled {
            if let Some(e) = range(self.otp.duration, 10, 86_400) {
                otp.insert("duration".into(), e);
            }
            if self.otp.length == 0 {
                otp.insert(
                    "length".into(),
                    err("validation_required", "Cannot be blank."),
                );
            } else if self.otp.length < 4 {
                otp.insert("length".into(), min_err(4));
            }
        }
        if let Some(e) = template_errors(&self.otp.email_template) {
            otp.insert("emailTemplate".into(), e);
        }
        put("otp", otp);
        let mut alert = Map::new();
        if let Some(e) = template_errors(&self.auth_alert.email_template) {
            alert.insert("emailTemplate".into(), e);
        }
        put("authAlert", alert);
        let mut mfa = Map::new();
        if self.mfa.enabled {
            if let Some(e) = range(self.mfa.duration, 10, 86_400) {
                mfa.insert("duration".into(), e);
            }
            let methods = [
                self.password_auth.enabled,
                self.oauth2.enabled,
                self.otp.enabled,
            ];
            if methods.iter().filter(|m| **m).count() < 2 {
                mfa.insert(
                    "enabled".into(),
                    err(
                        "validation_mfa_not_enough_auths",
                        "MFA requires at least 2 auth methods to be enabled.",
                    ),
                );
            }
        }
        put("mfa", mfa);
        if self.password_auth.enabled && self.password_auth.identity_fields.is_empty() {
            let mut m = Map::new();
            m.insert(
                "identityFields".into(),
                err("validation_required", "Cannot be blank."),
            );
            put("passwordAuth", m);
        }
        if self.oauth2.enabled {
            let providers = self.provider_errors(known);
            if !providers.is_empty() {
                let mut m = Map::new();
                m.insert("providers".into(), Value::Object(providers));
                put("oauth2", m);
            }
        }
        errors
    }

    /// Errors of the OAuth2 providers by index: a duplicated name first (as PocketBase, which
    /// then checks nothing else), else each provider's name, credentials and URLs.
    fn provider_errors(&self, known: impl Fn(&str) -> bool) -> Map<String, Value> {
        let mut out = Map::new();
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.oauth2.providers.iter().enumerate() {
            if !p.name.is_empty() && !seen.insert(p.name.as_str()) {
                let mut e = err(
                    "validation_duplicated_provider",
                    &format!("The provider {} is already registered.", p.name),
                );
                e["params"] = json!({"name": p.name});
                out.insert(i.to_string(), json!({"name": e}));
                return out;
            }
        }
        for (i, p) in self.oauth2.providers.iter().enumerate() {
            let mut m = Map::new();
            if p.name.is_empty() {
                m.insert(
                    "name".into(),
                    err("validation_required", "Cannot be blank."),
                );
            } else if !known(&p.name) {
                let mut e = err(
                    "validation_missing_provider",
                    &format!("Invalid or missing provider with name {}.", p.name),
                );
                e["params"] = json!({"name": p.name});
                m.insert("name".into(), e);
            }
            for (key, value) in [
                ("clientId", &p.client_id),
                ("clientSecret", &p.client_secret),
            ] {
                if value.is_empty() {
                    m.insert(key.into(), err("validation_required", "Cannot be blank."));
                }
            }
            for (key, value) in [
                ("authURL", &p.auth_url),
                ("tokenURL", &p.token_url),
                ("userInfoURL", &p.user_info_url),
            ] {
                if !value.is_empty() && !crate::records::validate::is_url(value) {
                    m.insert(key.into(), err("validation_is_url", "Must be a valid URL."));
                }
            }
            if !m.is_empty() {
                out.insert(i.to_string(), Value::Object(m));
            }
        }
        out
    }
}
