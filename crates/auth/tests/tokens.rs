//! Token lifecycle: issue, verify, expiry, revocation and tampering.

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use common::{Fixture, start_time};
use occoder_auth::{
    AuthConfig, AuthError, CLIENTS_FILE, Credentials, DENY_MESSAGE, Role, TOKEN_KEY_FILE,
    TokenClaims, TokenKey,
};
use tonic::Code;
use tonic_types::StatusExt;

fn credentials(client: &occoder_auth::NewClient) -> Credentials {
    Credentials::new(client.client_id.clone(), client.secret.expose())
}

#[test]
fn issued_token_verifies() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Partner);

    let issued = fixture.access.issue_token(&credentials(&client)).unwrap();
    assert_eq!(issued.expires_at, start_time() + TimeDelta::minutes(60));

    let principal = fixture.access.verify_token(&issued.token).unwrap();
    assert_eq!(principal.client_id, client.client_id);
    assert_eq!(principal.role, Role::Partner);
    assert_eq!(principal.token_id, issued.token_id);
    assert_eq!(principal.expires_at, issued.expires_at);
}

#[test]
fn token_expires_after_ttl() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Public);
    let issued = fixture.access.issue_token(&credentials(&client)).unwrap();

    fixture.clock.advance(Duration::from_secs(59 * 60 + 59));
    assert!(fixture.access.verify_token(&issued.token).is_ok());

    fixture.clock.advance(Duration::from_secs(1));
    let error = fixture.access.verify_token(&issued.token).unwrap_err();
    assert!(matches!(error, AuthError::ExpiredToken { .. }), "{error}");
    assert_eq!(error.code(), Code::Unauthenticated);
}

#[test]
fn token_ttl_is_configurable() {
    let config = AuthConfig {
        token_ttl_secs: 120,
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config);
    let client = fixture.add_client(Role::Public);
    let issued = fixture.access.issue_token(&credentials(&client)).unwrap();
    assert_eq!(issued.expires_at, start_time() + TimeDelta::seconds(120));

    fixture.clock.advance(Duration::from_secs(119));
    assert!(fixture.access.verify_token(&issued.token).is_ok());
    fixture.clock.advance(Duration::from_secs(1));
    assert!(fixture.access.verify_token(&issued.token).is_err());
}

#[test]
fn wrong_secret_is_rejected() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Public);

    let wrong = Credentials::new(client.client_id.clone(), "not-the-secret");
    let error = fixture.access.issue_token(&wrong).unwrap_err();
    assert!(
        matches!(error, AuthError::InvalidCredentials { .. }),
        "{error}"
    );

    let status = error.to_status();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().starts_with(DENY_MESSAGE),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("client id or secret is wrong"),
        "{}",
        status.message()
    );
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "INVALID_CREDENTIALS"
    );
}

#[test]
fn unknown_long_client_id_is_cut() {
    let fixture = Fixture::with_defaults();
    let long_id = "x".repeat(20_000);

    let error = fixture
        .access
        .issue_token(&Credentials::new(long_id, "secret"))
        .unwrap_err();

    let AuthError::InvalidCredentials { client_id } = &error else {
        panic!("expected invalid credentials, got {error}");
    };
    assert_eq!(client_id, &format!("{}...", "x".repeat(64)));
    assert!(error.to_string().len() < 200, "{error}");
}

#[test]
fn unknown_client_is_rejected() {
    let fixture = Fixture::with_defaults();
    let error = fixture
        .access
        .issue_token(&Credentials::new("occ-0000000000000000", "secret"))
        .unwrap_err();
    assert!(
        matches!(error, AuthError::InvalidCredentials { .. }),
        "{error}"
    );
}

#[test]
fn tampered_tokens_are_rejected() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Public);
    let token = fixture
        .access
        .issue_token(&credentials(&client))
        .unwrap()
        .token;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);

    // Re-sign the same claims with the role raised to partner and another key.
    let forged_claims = TokenClaims {
        role: Role::Partner,
        ..claims_of(&token)
    };
    let foreign_key = TokenKey::generate().sign(&forged_claims);
    let swapped_payload = format!(
        "{}.{}.{}",
        parts[0],
        TokenKey::generate()
            .sign(&forged_claims)
            .split('.')
            .nth(1)
            .unwrap(),
        parts[2]
    );
    // Replace a character inside the MAC, so it still decodes to 32 bytes but does not match.
    let position = token.len() - 10;
    let replacement = if &token[position..=position] == "A" {
        "B"
    } else {
        "A"
    };
    let mut flipped_mac = token.clone();
    flipped_mac.replace_range(position..=position, replacement);

    let cases = [
        ("empty", String::new()),
        ("garbage", "not a token".to_owned()),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("wrong prefix", format!("occ2.{}.{}", parts[1], parts[2])),
        ("flipped mac character", flipped_mac),
        ("truncated mac", token[..token.len() - 4].to_owned()),
        ("payload swapped", swapped_payload),
        ("signed with another key", foreign_key),
        ("too long", format!("{token}{}", "A".repeat(4096))),
    ];
    for (name, candidate) in cases {
        let result = fixture.access.verify_token(&candidate);
        assert!(
            matches!(result, Err(AuthError::InvalidToken(_))),
            "{name}: {result:?}"
        );
    }
}

/// Decodes the claims of a token without checking its signature.
fn claims_of(token: &str) -> TokenClaims {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn removed_client_token_is_revoked() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Public);
    let token = fixture
        .access
        .issue_token(&credentials(&client))
        .unwrap()
        .token;

    fixture.access.registry().remove(&client.client_id).unwrap();

    let error = fixture.access.verify_token(&token).unwrap_err();
    assert!(matches!(error, AuthError::RevokedToken { .. }), "{error}");
    assert_eq!(error.code(), Code::Unauthenticated);
    let error = fixture
        .access
        .issue_token(&credentials(&client))
        .unwrap_err();
    assert!(
        matches!(error, AuthError::InvalidCredentials { .. }),
        "{error}"
    );
}

#[test]
fn rotated_secret_revokes_tokens() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Public);
    let old_token = fixture
        .access
        .issue_token(&credentials(&client))
        .unwrap()
        .token;

    let new_secret = fixture
        .access
        .registry()
        .rotate_secret(&client.client_id)
        .unwrap();
    assert_ne!(new_secret.expose(), client.secret.expose());

    let error = fixture.access.verify_token(&old_token).unwrap_err();
    assert!(matches!(error, AuthError::RevokedToken { .. }), "{error}");

    let old_secret_error = fixture
        .access
        .issue_token(&credentials(&client))
        .unwrap_err();
    assert!(
        matches!(old_secret_error, AuthError::InvalidCredentials { .. }),
        "{old_secret_error}"
    );

    let renewed = Credentials::new(client.client_id.clone(), new_secret.expose());
    let new_token = fixture.access.issue_token(&renewed).unwrap().token;
    assert!(fixture.access.verify_token(&new_token).is_ok());
}

#[test]
fn replica_on_same_directory_shares_tokens() {
    let fixture = Fixture::with_defaults();
    let replica = fixture.reopen(AuthConfig::default());
    let client = fixture.add_client(Role::Partner);

    // The replica loaded the registry before the client existed and must notice the new file.
    let token = fixture
        .access
        .issue_token(&credentials(&client))
        .unwrap()
        .token;
    let principal = replica.verify_token(&token).unwrap();
    assert_eq!(principal.client_id, client.client_id);

    // A removal through the replica revokes the token on the first instance.
    replica.registry().remove(&client.client_id).unwrap();
    let error = fixture.access.verify_token(&token).unwrap_err();
    assert!(matches!(error, AuthError::RevokedToken { .. }), "{error}");
}

#[test]
fn separate_key_file_is_shared() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_path = key_dir.path().join("shared-key");
    let config = AuthConfig {
        token_key_file: Some(key_path.clone()),
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config.clone());
    assert!(key_path.exists());
    assert!(!fixture.dir.path().join(TOKEN_KEY_FILE).exists());

    let client = fixture.add_client(Role::Public);
    let token = fixture
        .access
        .issue_token(&credentials(&client))
        .unwrap()
        .token;
    let reopened = fixture.reopen(config);
    assert!(reopened.verify_token(&token).is_ok());
}

#[test]
fn new_key_rejects_old_tokens() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Public);
    let token = fixture
        .access
        .issue_token(&credentials(&client))
        .unwrap()
        .token;

    std::fs::remove_file(fixture.dir.path().join(TOKEN_KEY_FILE)).unwrap();
    let reopened = fixture.reopen(AuthConfig::default());
    let result = reopened.verify_token(&token);
    assert!(
        matches!(result, Err(AuthError::InvalidToken(_))),
        "{result:?}"
    );
}

#[test]
fn corrupt_key_file_fails_open() {
    let fixture = Fixture::with_defaults();
    std::fs::write(fixture.dir.path().join(TOKEN_KEY_FILE), "c2hvcnQ\n").unwrap();
    let result = occoder_auth::AccessControl::open(fixture.dir.path(), AuthConfig::default());
    assert!(
        matches!(result, Err(AuthError::CorruptFile { .. })),
        "{result:?}"
    );
}

#[cfg(unix)]
#[test]
fn state_files_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let fixture = Fixture::with_defaults();
    fixture.add_client(Role::Public);
    for name in [TOKEN_KEY_FILE, CLIENTS_FILE] {
        let mode = std::fs::metadata(fixture.dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn registry_stores_only_hash() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Public);
    let text = std::fs::read_to_string(fixture.dir.path().join(CLIENTS_FILE)).unwrap();

    assert!(text.contains(&client.client_id));
    assert!(!text.contains(client.secret.expose()));
    assert!(text.contains("$argon2id$"));
    assert_eq!(format!("{:?}", client.secret), "ClientSecret(<redacted>)");
}

#[test]
fn registry_lists_and_validates() {
    let fixture = Fixture::with_defaults();
    let public = fixture.add_client(Role::Public);
    let partner = fixture
        .access
        .registry()
        .add("  Partner agency ", Role::Partner)
        .unwrap();

    assert!(public.client_id.starts_with("occ-"));
    assert_eq!(public.client_id.len(), 4 + 16);
    assert_ne!(public.client_id, partner.client_id);
    assert_eq!(public.secret.expose().len(), 43);

    let clients = fixture.access.registry().list().unwrap();
    assert_eq!(clients.len(), 2);
    let stored = clients.iter().find(|c| c.id == partner.client_id).unwrap();
    assert_eq!(stored.name, "Partner agency");
    assert_eq!(stored.role, Role::Partner);
    assert_eq!(stored.created_at, start_time());
    assert_eq!(stored.secret_generation, 0);

    for bad in ["", "   ", "tab\tname"] {
        let result = fixture.access.registry().add(bad, Role::Public);
        assert!(
            matches!(result, Err(AuthError::InvalidClientName { .. })),
            "{bad:?}: {result:?}"
        );
    }
    let too_long = "x".repeat(201);
    assert!(
        fixture
            .access
            .registry()
            .add(&too_long, Role::Public)
            .is_err()
    );

    let missing = fixture.access.registry().remove("occ-ffffffffffffffff");
    assert!(
        matches!(missing, Err(AuthError::ClientNotFound(_))),
        "{missing:?}"
    );
    let missing = fixture
        .access
        .registry()
        .rotate_secret("occ-ffffffffffffffff");
    assert!(
        matches!(missing, Err(AuthError::ClientNotFound(_))),
        "{missing:?}"
    );
}

#[test]
fn dev_client_is_reused() {
    let fixture = Fixture::with_defaults();
    let first = fixture.access.ensure_dev_client().unwrap();
    assert!(first.created);

    let reopened = fixture.reopen(AuthConfig::default());
    let second = reopened.ensure_dev_client().unwrap();
    assert!(!second.created);
    assert_eq!(second.client_id, first.client_id);
    assert_eq!(second.secret.expose(), first.secret.expose());

    let info = reopened.registry().get(&first.client_id).unwrap().unwrap();
    assert_eq!(info.role, Role::Partner);
    let token = reopened
        .issue_token(&Credentials::new(
            first.client_id.clone(),
            first.secret.expose(),
        ))
        .unwrap()
        .token;
    assert!(reopened.verify_token(&token).is_ok());
}

#[test]
fn dev_client_secret_is_repaired() {
    let fixture = Fixture::with_defaults();
    let first = fixture.access.ensure_dev_client().unwrap();
    fixture
        .access
        .registry()
        .rotate_secret(&first.client_id)
        .unwrap();

    let repaired = fixture.access.ensure_dev_client().unwrap();
    assert!(repaired.created);
    assert_eq!(repaired.client_id, first.client_id);
    assert_ne!(repaired.secret.expose(), first.secret.expose());
    assert!(
        fixture
            .access
            .registry()
            .verify_secret(&repaired.client_id, &repaired.secret)
            .is_ok()
    );
}
