//! Deserialization of `AuthConfig` as embedded in the server's TOML file.

use std::path::PathBuf;

use occoder_auth::{AuthConfig, Role};
use serde::Deserialize;

#[derive(Deserialize)]
struct ServerFile {
    #[serde(default)]
    auth: AuthConfig,
}

#[test]
fn missing_table_uses_defaults() {
    let file: ServerFile = toml::from_str("").unwrap();
    let config = file.auth;

    assert_eq!(config, AuthConfig::default());
    assert_eq!(config.token_ttl_secs, 3600);
    assert_eq!(config.token_requests_per_window, 10);
    assert_eq!(config.token_request_window_secs, 3600);
    assert_eq!(config.token_cooldown_secs, 900);
    assert_eq!(config.requests_per_second, 1.0);
    assert_eq!(config.burst, 1);
    assert_eq!(config.daily_limit(Role::Public), 1000);
    assert_eq!(config.daily_limit(Role::Partner), 10_000);
    assert_eq!(config.token_key_file, None);
}

#[test]
fn partial_table_keeps_other_defaults() {
    let text = r#"
        [auth]
        token_ttl_secs = 1800
        burst = 3
        daily_limit_public = 50
        token_key_file = "/etc/occoder/token-key"
    "#;
    let config = toml::from_str::<ServerFile>(text).unwrap().auth;

    assert_eq!(config.token_ttl_secs, 1800);
    assert_eq!(config.burst, 3);
    assert_eq!(config.daily_limit_public, 50);
    assert_eq!(config.daily_limit_partner, 10_000);
    assert_eq!(
        config.token_key_file,
        Some(PathBuf::from("/etc/occoder/token-key"))
    );
    assert!(config.validate().is_ok());
}

#[test]
fn unknown_field_is_rejected() {
    let error = toml::from_str::<ServerFile>("[auth]\ntoken_ttl = 60\n")
        .err()
        .expect("unknown field must fail");
    assert!(error.to_string().contains("token_ttl"), "{error}");
}
