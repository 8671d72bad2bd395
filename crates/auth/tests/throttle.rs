//! Token request throttling and its cool-down.

mod common;

use std::time::Duration;

use common::Fixture;
use occoder_auth::{AuthConfig, AuthError, Credentials, DENY_MESSAGE, Role};
use tonic::Code;
use tonic_types::StatusExt;

#[test]
fn eleventh_request_starts_cooldown() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Public);
    let good = Credentials::new(client.client_id.clone(), client.secret.expose());
    let wrong = Credentials::new(client.client_id.clone(), "guess");

    // Failed requests count too: 5 wrong and 5 right use up the default limit of 10.
    for _ in 0..5 {
        let error = fixture.access.issue_token(&wrong).unwrap_err();
        assert!(
            matches!(error, AuthError::InvalidCredentials { .. }),
            "{error}"
        );
        fixture.clock.advance(Duration::from_secs(60));
    }
    for _ in 0..5 {
        fixture.access.issue_token(&good).unwrap();
        fixture.clock.advance(Duration::from_secs(60));
    }

    let error = fixture.access.issue_token(&good).unwrap_err();
    assert!(
        matches!(error, AuthError::TokenRequestsThrottled { .. }),
        "{error}"
    );
    let status = error.to_status();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().starts_with(DENY_MESSAGE),
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("more than 10 token requests within 3600 s"),
        "the message states the cause: {}",
        status.message()
    );
    assert!(
        status.message().contains("rejected until ") && status.message().contains("retry in 900 s"),
        "the message states when to retry: {}",
        status.message()
    );
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.reason, "TOKEN_REQUESTS_THROTTLED");
    assert!(info.metadata.contains_key("until"), "{info:?}");
    assert_eq!(info.metadata["limit"], "10");
    assert_eq!(
        status.get_details_retry_info().unwrap().retry_delay,
        Some(Duration::from_secs(15 * 60))
    );

    // Still rejected one second before the 15-minute cool-down ends.
    fixture.clock.advance(Duration::from_secs(15 * 60 - 1));
    let error = fixture.access.issue_token(&good).unwrap_err();
    assert!(
        matches!(error, AuthError::TokenRequestsThrottled { .. }),
        "{error}"
    );

    fixture.clock.advance(Duration::from_secs(1));
    assert!(fixture.access.issue_token(&good).is_ok());
}

#[test]
fn throttle_is_per_client() {
    let config = AuthConfig {
        token_requests_per_window: 2,
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config);
    let first = fixture.add_client(Role::Public);
    let second = fixture.add_client(Role::Public);
    let first_wrong = Credentials::new(first.client_id.clone(), "guess");

    for _ in 0..2 {
        assert!(fixture.access.issue_token(&first_wrong).is_err());
    }
    let error = fixture.access.issue_token(&first_wrong).unwrap_err();
    assert!(
        matches!(error, AuthError::TokenRequestsThrottled { .. }),
        "{error}"
    );

    let other = Credentials::new(second.client_id.clone(), second.secret.expose());
    assert!(fixture.access.issue_token(&other).is_ok());
}

#[test]
fn window_slides_forward() {
    let config = AuthConfig {
        token_requests_per_window: 2,
        token_request_window_secs: 600,
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config);
    let client = fixture.add_client(Role::Public);
    let wrong = Credentials::new(client.client_id.clone(), "guess");

    // Requests at 0 s and 300 s; at 600 s the first has left the 600 s window.
    assert!(matches!(
        fixture.access.issue_token(&wrong),
        Err(AuthError::InvalidCredentials { .. })
    ));
    fixture.clock.advance(Duration::from_secs(300));
    assert!(matches!(
        fixture.access.issue_token(&wrong),
        Err(AuthError::InvalidCredentials { .. })
    ));
    fixture.clock.advance(Duration::from_secs(300));
    assert!(matches!(
        fixture.access.issue_token(&wrong),
        Err(AuthError::InvalidCredentials { .. })
    ));

    // Now 300 s and 600 s are in the window, so one more request at 601 s exceeds it.
    fixture.clock.advance(Duration::from_secs(1));
    assert!(matches!(
        fixture.access.issue_token(&wrong),
        Err(AuthError::TokenRequestsThrottled { .. })
    ));
}

#[test]
fn unknown_clients_are_not_throttled() {
    let config = AuthConfig {
        token_requests_per_window: 1,
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config);
    let unknown = Credentials::new("occ-0000000000000000", "guess");
    for _ in 0..3 {
        let error = fixture.access.issue_token(&unknown).unwrap_err();
        assert!(
            matches!(error, AuthError::InvalidCredentials { .. }),
            "{error}"
        );
    }
}
