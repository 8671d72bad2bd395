//! Per-second rate limit, daily ceilings, roles and persistence of daily counts.

mod common;

use std::time::Duration;

use chrono::TimeDelta;
use common::{Fixture, start_time};
use occoder_auth::{
    AuthConfig, AuthError, Credentials, DENY_MESSAGE, LIMIT_EXCEEDED_MESSAGE, OperationClass,
    Principal, QUOTA_FILE, Role, TOO_MANY_REQUESTS_MESSAGE,
};
use tonic::Code;
use tonic_types::StatusExt;

fn principal(fixture: &Fixture, role: Role) -> Principal {
    let client = fixture.add_client(role);
    let credentials = Credentials::new(client.client_id, client.secret.expose());
    let token = fixture.access.issue_token(&credentials).unwrap().token;
    fixture.access.verify_token(&token).unwrap()
}

fn retry_after(result: Result<(), AuthError>) -> Duration {
    match result {
        Err(AuthError::RateLimited { retry_after, .. }) => retry_after,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[test]
fn second_request_within_second_is_limited() {
    let fixture = Fixture::with_defaults();
    let caller = principal(&fixture, Role::Public);
    let sync = OperationClass::Synchronous;

    fixture.access.admit(&caller, sync).unwrap();
    assert_eq!(
        retry_after(fixture.access.admit(&caller, sync)),
        Duration::from_secs(1)
    );

    fixture.clock.advance(Duration::from_millis(400));
    let error = fixture.access.admit(&caller, sync).unwrap_err();
    let status = error.to_status();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().starts_with(TOO_MANY_REQUESTS_MESSAGE),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("requests per second"),
        "the message states the limit: {}",
        status.message()
    );
    assert!(
        status.message().contains("retry after"),
        "{}",
        status.message()
    );
    assert_eq!(
        status.get_details_retry_info().unwrap().retry_delay,
        Some(Duration::from_millis(600))
    );

    fixture.clock.advance(Duration::from_millis(600));
    assert!(fixture.access.admit(&caller, sync).is_ok());

    // Only the admitted requests count towards the daily ceiling.
    assert_eq!(fixture.access.daily_usage(&caller.client_id), 2);
}

#[test]
fn rate_limit_is_per_client() {
    let fixture = Fixture::with_defaults();
    let first = principal(&fixture, Role::Public);
    let second = principal(&fixture, Role::Partner);

    fixture
        .access
        .admit(&first, OperationClass::Synchronous)
        .unwrap();
    assert!(
        fixture
            .access
            .admit(&second, OperationClass::Synchronous)
            .is_ok()
    );
}

#[test]
fn burst_allows_back_to_back() {
    let config = AuthConfig {
        requests_per_second: 2.0,
        burst: 3,
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config);
    let caller = principal(&fixture, Role::Public);
    let sync = OperationClass::Synchronous;

    for index in 0..3 {
        assert!(
            fixture.access.admit(&caller, sync).is_ok(),
            "request {index}"
        );
    }
    assert_eq!(
        retry_after(fixture.access.admit(&caller, sync)),
        Duration::from_millis(500)
    );

    fixture.clock.advance(Duration::from_millis(500));
    assert!(fixture.access.admit(&caller, sync).is_ok());
    assert!(fixture.access.admit(&caller, sync).is_err());
}

/// Admits requests one second apart until one fails; returns the count and the error.
fn admit_until_rejected(fixture: &Fixture, caller: &Principal, max: u64) -> (u64, AuthError) {
    for admitted in 0..=max {
        if let Err(error) = fixture.access.admit(caller, OperationClass::Synchronous) {
            return (admitted, error);
        }
        fixture.clock.advance(Duration::from_secs(1));
    }
    panic!("more than {max} requests were admitted");
}

#[test]
fn public_daily_ceiling_is_1000() {
    let fixture = Fixture::with_defaults();
    let caller = principal(&fixture, Role::Public);

    let (admitted, error) = admit_until_rejected(&fixture, &caller, 1000);
    assert_eq!(admitted, 1000);
    assert!(
        matches!(error, AuthError::DailyLimitExceeded { limit: 1000, .. }),
        "{error}"
    );

    let status = error.to_status();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().starts_with(LIMIT_EXCEEDED_MESSAGE),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("daily limit of 1000 requests"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("resets at"),
        "{}",
        status.message()
    );
    let info = status.get_details_error_info().unwrap();
    assert_eq!(info.reason, "DAILY_LIMIT_EXCEEDED");
    assert_eq!(info.metadata["limit"], "1000");
}

#[test]
fn partner_daily_ceiling_is_10000() {
    let fixture = Fixture::with_defaults();
    let caller = principal(&fixture, Role::Partner);

    let (admitted, error) = admit_until_rejected(&fixture, &caller, 10_000);
    assert_eq!(admitted, 10_000);
    assert!(
        matches!(error, AuthError::DailyLimitExceeded { limit: 10_000, .. }),
        "{error}"
    );
}

#[test]
fn daily_ceiling_resets_at_utc_midnight() {
    let config = AuthConfig {
        daily_limit_public: 2,
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config);
    let caller = principal(&fixture, Role::Public);
    let (admitted, error) = admit_until_rejected(&fixture, &caller, 2);
    assert_eq!(admitted, 2);

    let midnight = (start_time() + TimeDelta::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    match error {
        AuthError::DailyLimitExceeded {
            resets_at,
            retry_after,
            ..
        } => {
            assert_eq!(resets_at, midnight);
            assert_eq!(
                retry_after,
                (midnight - fixture.clock_now()).to_std().unwrap()
            );
        }
        other => panic!("expected DailyLimitExceeded, got {other:?}"),
    }

    fixture.clock.set(midnight - TimeDelta::seconds(1));
    assert!(
        fixture
            .access
            .admit(&caller, OperationClass::Synchronous)
            .is_err()
    );
    fixture.clock.set(midnight);
    assert_eq!(fixture.access.daily_usage(&caller.client_id), 0);
    assert!(
        fixture
            .access
            .admit(&caller, OperationClass::Synchronous)
            .is_ok()
    );
}

#[test]
fn public_role_cannot_call_bulk() {
    let fixture = Fixture::with_defaults();
    let public = principal(&fixture, Role::Public);
    let partner = principal(&fixture, Role::Partner);

    let error = fixture
        .access
        .admit(&public, OperationClass::Bulk)
        .unwrap_err();
    assert!(matches!(error, AuthError::RoleDenied { .. }), "{error}");
    let status = error.to_status();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().starts_with(DENY_MESSAGE),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("has the public role"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("occoder clients add --role partner"),
        "{}",
        status.message()
    );
    assert_eq!(fixture.access.daily_usage(&public.client_id), 0);

    assert!(fixture.access.admit(&partner, OperationClass::Bulk).is_ok());
    assert!(Role::Public.permits(OperationClass::Synchronous));
    assert!(!Role::Public.permits(OperationClass::Bulk));
    assert!(Role::Partner.permits(OperationClass::Synchronous));
    assert!(Role::Partner.permits(OperationClass::Bulk));
}

#[test]
fn daily_count_survives_restart() {
    let config = AuthConfig {
        daily_limit_public: 5,
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config.clone());
    let caller = principal(&fixture, Role::Public);
    let (admitted, _) = admit_until_rejected(&fixture, &caller, 5);
    assert_eq!(admitted, 5);
    fixture.access.flush().unwrap();

    // A restarted server on the same data directory keeps the ceiling.
    let restarted = fixture.reopen(config.clone());
    assert_eq!(restarted.daily_usage(&caller.client_id), 5);
    fixture.clock.advance(Duration::from_secs(10));
    let result = restarted.admit(&caller, OperationClass::Synchronous);
    assert!(
        matches!(result, Err(AuthError::DailyLimitExceeded { .. })),
        "{result:?}"
    );
    drop(restarted);

    // On the next UTC day the stored counts no longer apply.
    fixture.clock.advance(Duration::from_secs(24 * 3600));
    let next_day = fixture.reopen(config);
    assert_eq!(next_day.daily_usage(&caller.client_id), 0);
}

#[test]
fn drop_writes_daily_counts() {
    let fixture = Fixture::with_defaults();
    let caller = principal(&fixture, Role::Public);
    fixture
        .access
        .admit(&caller, OperationClass::Synchronous)
        .unwrap();

    let Fixture { dir, clock, access } = fixture;
    drop(access);
    let restarted =
        occoder_auth::AccessControl::open_with_clock(dir.path(), AuthConfig::default(), clock)
            .unwrap();
    assert_eq!(restarted.daily_usage(&caller.client_id), 1);
}

/// Reads the stored count of `client_id` from `quota-usage.json`, or 0 if absent.
fn stored_count(fixture: &Fixture, client_id: &str) -> u64 {
    let path = fixture.dir.path().join(QUOTA_FILE);
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    let file: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    file["counts"][client_id].as_u64().unwrap_or(0)
}

#[test]
fn counts_are_written_behind() {
    let config = AuthConfig {
        quota_flush_every: 3,
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config);
    let caller = principal(&fixture, Role::Public);

    let mut stored = Vec::new();
    for _ in 0..7 {
        fixture
            .access
            .admit(&caller, OperationClass::Synchronous)
            .unwrap();
        fixture.clock.advance(Duration::from_secs(1));
        stored.push(stored_count(&fixture, &caller.client_id));
    }
    assert_eq!(stored, [0, 0, 3, 3, 3, 6, 6]);

    fixture.access.flush().unwrap();
    assert_eq!(stored_count(&fixture, &caller.client_id), 7);
}

#[test]
fn flusher_thread_writes_counts() {
    let config = AuthConfig {
        quota_flush_interval_ms: 10,
        ..AuthConfig::default()
    };
    let fixture = Fixture::new(config);
    let caller = principal(&fixture, Role::Public);
    let flusher = fixture.access.spawn_quota_flusher();

    fixture
        .access
        .admit(&caller, OperationClass::Synchronous)
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stored_count(&fixture, &caller.client_id) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "flusher wrote nothing within 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    fixture.clock.advance(Duration::from_secs(1));
    fixture
        .access
        .admit(&caller, OperationClass::Synchronous)
        .unwrap();
    flusher.stop();
    assert_eq!(stored_count(&fixture, &caller.client_id), 2);
}

#[cfg(unix)]
#[test]
fn quota_file_is_private() {
    use std::os::unix::fs::PermissionsExt;

    let fixture = Fixture::with_defaults();
    let caller = principal(&fixture, Role::Public);
    fixture
        .access
        .admit(&caller, OperationClass::Synchronous)
        .unwrap();
    fixture.access.flush().unwrap();

    let metadata = std::fs::metadata(fixture.dir.path().join(QUOTA_FILE)).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
}

#[test]
fn invalid_config_is_rejected() {
    let cases = [
        AuthConfig {
            token_ttl_secs: 0,
            ..AuthConfig::default()
        },
        AuthConfig {
            requests_per_second: 0.0,
            ..AuthConfig::default()
        },
        AuthConfig {
            requests_per_second: f64::NAN,
            ..AuthConfig::default()
        },
        AuthConfig {
            burst: 0,
            ..AuthConfig::default()
        },
        AuthConfig {
            daily_limit_partner: 0,
            ..AuthConfig::default()
        },
        AuthConfig {
            token_requests_per_window: 0,
            ..AuthConfig::default()
        },
        AuthConfig {
            quota_flush_every: 0,
            ..AuthConfig::default()
        },
    ];
    for config in cases {
        let result = config.validate();
        assert!(
            matches!(result, Err(AuthError::InvalidConfig(_))),
            "{config:?}"
        );
    }
    assert!(AuthConfig::default().validate().is_ok());
}
