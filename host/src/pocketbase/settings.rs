//! PocketBase's application settings (`_params.settings`) on their way into Syncbase: read as
//! stored, decrypted when PocketBase ran with an encryption key, and checked for sections that
//! Syncbase keeps but does not act on (S3, scheduled backups).

use serde_json::Value;

use super::report::Note;

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error(
        "PocketBase's settings are encrypted (it ran with --encryptionEnv): pass --encryption-env \
         with the name of the environment variable holding the same 32-character key"
    )]
    Encrypted,
    #[error("PocketBase's settings could not be decrypted with the key in ${0}: {1}")]
    Decrypt(String, String),
}

/// Settings sections Syncbase stores (and serves back) but does not act on, with what a
/// non-default value there means. (`s3` is acted on: Syncbase serves files from the same
/// bucket; the import says what that means for the files' bytes.)
const INERT: [(&str, &str); 2] = [
    ("backups.cron", "scheduled backups are not run"),
    ("backups.s3", "backups are not uploaded to S3"),
];

/// The key PocketBase encrypted its settings with: the environment variable named by
/// `--encryption-env`, and its value.
#[derive(Debug, Clone)]
pub struct EncryptionKey {
    pub var: String,
    pub value: Option<String>,
}

impl EncryptionKey {
    pub fn from_env(var: &str) -> EncryptionKey {
        EncryptionKey {
            var: var.to_string(),
            value: std::env::var(var).ok(),
        }
    }
}

/// The stored settings as JSON, decrypted with `key` when PocketBase encrypted them; notes for
/// what Syncbase will not act on.
pub fn read(
    stored: Option<&str>,
    key: Option<&EncryptionKey>,
) -> Result<(Option<Value>, Vec<Note>), SettingsError> {
    let Some(stored) = stored else {
        return Ok((None, Vec::new()));
    };
    let mut notes = Vec::new();
    let value = match serde_json::from_str::<Value>(stored) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            let Some(key) = key else {
                return Err(SettingsError::Encrypted);
            };
            let var = key.var.clone();
            let Some(secret) = key.value.as_deref().filter(|v| !v.is_empty()) else {
                return Err(SettingsError::Decrypt(
                    var,
                    "the variable is not set".into(),
                ));
            };
            let plain = decrypt(stored.trim().trim_matches('"'), secret)
                .map_err(|e| SettingsError::Decrypt(var.clone(), e))?;
            notes.push(Note::new(
                "settings",
                "PocketBase stored them encrypted; Syncbase stores them unencrypted in data.db \
                 (SMTP and S3 passwords included)"
                    .into(),
            ));
            serde_json::from_slice(&plain)
                .map_err(|e| SettingsError::Decrypt(var, e.to_string()))?
        }
    };
    for (path, what) in INERT {
        if let Some(v) = lookup(&value, path)
            && is_set(path, v)
        {
            notes.push(Note::new(
                &format!("settings.{path}"),
                format!("kept, but {what}"),
            ));
        }
    }
    Ok((Some(value), notes))
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// Whether a section holds something other than PocketBase's default.
fn is_set(path: &str, v: &Value) -> bool {
    match path {
        "backups.s3" => v.get("enabled").and_then(Value::as_bool) == Some(true),
        _ => match v {
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => false,
        },
    }
}

/// PocketBase's `security.Decrypt`: AES-256-GCM with the 32-byte key as given, over the
/// standard base64 of nonce (12 bytes) followed by the sealed data.
fn decrypt(text: &str, key: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
    let key = UnboundKey::new(&AES_256_GCM, key.as_bytes())
        .map_err(|_| "the key must be exactly 32 bytes".to_string())?;
    let mut data = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not PocketBase's encrypted text ({e})"))?;
    if data.len() < NONCE_LEN {
        return Err("not PocketBase's encrypted text (too short)".into());
    }
    let sealed = data.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| "bad nonce".to_string())?;
    let mut sealed = sealed;
    let plain = LessSafeKey::new(key)
        .open_in_place(nonce, Aad::empty(), &mut sealed)
        .map_err(|_| "wrong key, or damaged settings".to_string())?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// PocketBase's `security.Encrypt`, for the tests.
    fn encrypt(plain: &[u8], key: &str, nonce: [u8; 12]) -> String {
        use base64::Engine;
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.as_bytes()).expect("key"));
        let mut data = plain.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut data)
            .expect("seal");
        let mut out = nonce.to_vec();
        out.extend(data);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    #[test]
    fn plain_settings_are_read_and_inert_sections_named() {
        let stored =
            json!({"meta": {"appName": "Mine"}, "rateLimits": {"enabled": true, "rules": []},
                            "s3": {"enabled": false}, "superuserIPs": ["10.0.0.1"],
                            "backups": {"cron": "0 0 * * *", "s3": {"enabled": true}}})
            .to_string();
        let (value, notes) = read(Some(&stored), None).expect("read");
        assert_eq!(value.expect("settings")["meta"]["appName"], "Mine");
        let subjects: Vec<&str> = notes.iter().map(|n| n.subject.as_str()).collect();
        assert_eq!(
            subjects,
            // Rate limits and superuser IPs are enforced by Syncbase: not named.
            ["settings.backups.cron", "settings.backups.s3"]
        );
    }

    #[test]
    fn encrypted_settings_need_the_key_and_the_right_one() {
        let key = "0123456789abcdef0123456789abcdef";
        let text = encrypt(br#"{"meta":{"appName":"Secret"}}"#, key, [7; 12]);
        assert_eq!(read(Some(&text), None), Err(SettingsError::Encrypted));
        let with = |value: Option<&str>| EncryptionKey {
            var: "PB_KEY".into(),
            value: value.map(String::from),
        };
        let (value, notes) = read(Some(&text), Some(&with(Some(key)))).expect("decrypt");
        assert_eq!(value.expect("settings")["meta"]["appName"], "Secret");
        assert_eq!(notes[0].subject, "settings");
        let wrong = read(
            Some(&text),
            Some(&with(Some("ffffffffffffffffffffffffffffffff"))),
        )
        .expect_err("wrong key");
        assert!(wrong.to_string().contains("wrong key"), "{wrong}");
        let unset = read(Some(&text), Some(&with(None))).expect_err("unset");
        assert!(
            unset
                .to_string()
                .contains("$PB_KEY: the variable is not set"),
            "{unset}"
        );
    }
}
