//! Plugin configuration: the string given when a plugin is bound.
//!
//! By convention it is JSON; an empty string means "the defaults". The host
//! hands every instance of a binding the same string, and it travels with the
//! binding through the log, so configuration stays deterministic.

use serde::de::DeserializeOwned;

/// Parses a JSON configuration into `T`; an empty (or blank) string gives
/// `T::default()`. The error message is what the person binding the plugin sees.
pub fn parse_config<T: DeserializeOwned + Default>(config: &str) -> Result<T, String> {
    if config.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(config).map_err(|e| format!("invalid plugin configuration: {e}"))
}

/// For plugins without configuration: accepts only an empty string (or `{}`).
pub fn no_config(config: &str) -> Result<(), String> {
    match config.trim() {
        "" | "{}" | "null" => Ok(()),
        other => Err(format!("this plugin takes no configuration, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        fields: Vec<String>,
    }

    #[test]
    fn empty_config_gives_defaults_and_bad_json_explains_itself() {
        assert_eq!(parse_config::<Cfg>("  "), Ok(Cfg::default()));
        assert_eq!(
            parse_config::<Cfg>(r#"{"fields":["a"]}"#),
            Ok(Cfg {
                fields: vec!["a".into()]
            })
        );
        let err = parse_config::<Cfg>(r#"{"felds":[]}"#)
            .err()
            .unwrap_or_default();
        assert!(err.contains("unknown field"), "{err}");
        assert!(no_config("").is_ok());
        assert!(no_config("{\"x\":1}").is_err());
    }
}
