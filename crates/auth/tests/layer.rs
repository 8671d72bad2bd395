//! The tower layer driven with `ServiceExt::oneshot` around a recording inner service.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Fixture;
use http::{Request, Response, header};
use occoder_auth::{AuthLayer, Credentials, DENY_MESSAGE, Principal, Role};
use tonic::Code;
use tonic_types::StatusExt;
use tower::{Layer, ServiceExt};

const CODE_PATH: &str = "/occoder.v1.Coding/Code";
const STREAM_PATH: &str = "/occoder.v1.Coding/CodeStream";
const TOKEN_PATH: &str = "/occoder.v1.Auth/GetToken";
const HEALTH_PATH: &str = "/grpc.health.v1.Health/Check";

/// Layer under test plus a counter of calls that reached the inner service.
struct Harness {
    fixture: Fixture,
    layer: AuthLayer,
    calls: Arc<AtomicUsize>,
}

impl Harness {
    fn new() -> Self {
        let fixture = Fixture::with_defaults();
        let layer = AuthLayer::new(fixture.access.clone())
            .allow_unauthenticated(TOKEN_PATH)
            .bulk(STREAM_PATH);
        Self {
            fixture,
            layer,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn token(&self, role: Role) -> String {
        let client = self.fixture.add_client(role);
        let credentials = Credentials::new(client.client_id, client.secret.expose());
        self.fixture.access.issue_token(&credentials).unwrap().token
    }

    /// Sends one request through the layer. The inner service responds with
    /// the principal's client id in the body, or `anonymous`.
    async fn send(&self, path: &str, authorization: Option<&str>) -> Response<String> {
        let calls = self.calls.clone();
        let inner = tower::service_fn(move |request: Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = match request.extensions().get::<Principal>() {
                Some(principal) => principal.client_id.clone(),
                None => "anonymous".to_owned(),
            };
            async move { Ok::<_, Infallible>(Response::new(body)) }
        });

        let mut request = Request::builder().method("POST").uri(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let request = request.body(String::new()).unwrap();
        self.layer.layer(inner).oneshot(request).await.unwrap()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn status_of(response: &Response<String>) -> Option<tonic::Status> {
    tonic::Status::from_header_map(response.headers())
}

#[tokio::test]
async fn missing_header_is_unauthenticated() {
    let harness = Harness::new();
    let response = harness.send(CODE_PATH, None).await;

    assert_eq!(response.status(), http::StatusCode::OK);
    let status = status_of(&response).expect("grpc-status header");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(
        status.message().starts_with(DENY_MESSAGE),
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("no `authorization: Bearer <token>` metadata"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("Auth.CreateToken"),
        "{}",
        status.message()
    );
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "TOKEN_MISSING"
    );
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated() {
    let harness = Harness::new();
    let token = harness.token(Role::Public);
    let cases = [
        "Bearer not-a-token".to_owned(),
        format!("Bearer {token}x"),
        format!("Basic {token}"),
        "Bearer".to_owned(),
    ];
    for value in cases {
        let response = harness.send(CODE_PATH, Some(&value)).await;
        let status = status_of(&response).expect("grpc-status header");
        assert_eq!(status.code(), Code::Unauthenticated, "{value}");
    }
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    let harness = Harness::new();
    let token = harness.token(Role::Public);
    harness.fixture.clock.advance(Duration::from_secs(3600));

    let response = harness
        .send(CODE_PATH, Some(&format!("Bearer {token}")))
        .await;
    let status = status_of(&response).expect("grpc-status header");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.get_details_error_info().unwrap().reason,
        "TOKEN_EXPIRED"
    );
    assert_eq!(harness.calls(), 0);
}

#[tokio::test]
async fn good_token_reaches_handler() {
    let harness = Harness::new();
    let token = harness.token(Role::Public);
    let client_id = harness
        .fixture
        .access
        .verify_token(&token)
        .unwrap()
        .client_id;

    let response = harness
        .send(CODE_PATH, Some(&format!("Bearer {token}")))
        .await;
    assert!(status_of(&response).is_none(), "{:?}", status_of(&response));
    assert_eq!(response.body(), &client_id);
    assert_eq!(harness.calls(), 1);
    assert_eq!(harness.fixture.access.daily_usage(&client_id), 1);
}

#[tokio::test]
async fn unauthenticated_paths_pass_through() {
    let harness = Harness::new();
    for path in [
        HEALTH_PATH,
        TOKEN_PATH,
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ] {
        let response = harness.send(path, None).await;
        assert!(status_of(&response).is_none(), "{path}");
        assert_eq!(response.body(), "anonymous", "{path}");
    }
    assert_eq!(harness.calls(), 3);

    // Exact entries match only the full path.
    let response = harness.send("/occoder.v1.Auth/GetTokenX", None).await;
    assert_eq!(status_of(&response).unwrap().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn bulk_path_needs_partner() {
    let harness = Harness::new();
    let public = harness.token(Role::Public);
    let partner = harness.token(Role::Partner);

    let response = harness
        .send(STREAM_PATH, Some(&format!("Bearer {public}")))
        .await;
    let status = status_of(&response).expect("grpc-status header");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().starts_with(DENY_MESSAGE),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("--role partner"),
        "{}",
        status.message()
    );
    assert_eq!(harness.calls(), 0);

    let response = harness
        .send(STREAM_PATH, Some(&format!("Bearer {partner}")))
        .await;
    assert!(status_of(&response).is_none());
    assert_eq!(harness.calls(), 1);
}

#[tokio::test]
async fn rate_limit_returns_retry_info() {
    let harness = Harness::new();
    let value = format!("Bearer {}", harness.token(Role::Public));

    let first = harness.send(CODE_PATH, Some(&value)).await;
    assert!(status_of(&first).is_none());

    let second = harness.send(CODE_PATH, Some(&value)).await;
    let status = status_of(&second).expect("grpc-status header");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().starts_with("Too Many Requests"),
        "{}",
        status.message()
    );
    assert_eq!(
        status.get_details_retry_info().unwrap().retry_delay,
        Some(Duration::from_secs(1))
    );
    assert_eq!(harness.calls(), 1);
}
