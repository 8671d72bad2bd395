//! Access control through the gRPC API: the token lifecycle of
//! Auth.CreateToken, the per-second rate limit and the daily ceiling,
//! which survives a server restart.

mod grpc_support;

use std::time::Duration;

use base64::Engine;
use grpc_support::*;
use occoder::proto::v1 as pb;
use occoder_auth::{ClientRegistry, Role};
use tonic::{Code, Request};
use tonic_types::StatusExt;

const DENY: &str = "User is not authorized to access this resource with an explicit deny";

async fn list_topics(endpoint: &Endpoint, token: &str) -> Result<pb::ListTopicsResponse, tonic::Status> {
    endpoint.coder().await.list_topics(authorized(pb::ListTopicsRequest {}, token)).await.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn token_from_fields_works() {
    let endpoint = shared_server();
    let (client_id, secret) = endpoint.add_client(Role::Public);

    let token = create_token(&mut endpoint.auth().await, &client_id, &secret).await.unwrap();

    assert_eq!(token.token_type, "Bearer");
    assert!((3590..=3600).contains(&token.expires_in), "{}", token.expires_in);
    assert!(token.expires_at.is_some());
    assert!(list_topics(endpoint, &token.access_token).await.is_ok());
}

#[tokio::test]
async fn token_from_basic_metadata_works() {
    let endpoint = shared_server();
    let (client_id, secret) = endpoint.add_client(Role::Partner);
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"));
    let mut request = Request::new(pb::CreateTokenRequest::default());
    request.metadata_mut().insert("authorization", format!("Basic {encoded}").parse().unwrap());

    let token = endpoint.auth().await.create_token(request).await.unwrap().into_inner();

    assert!(list_topics(endpoint, &token.access_token).await.is_ok());
}

#[tokio::test]
async fn wrong_secret_is_unauthenticated() {
    let endpoint = shared_server();
    let (client_id, _) = endpoint.add_client(Role::Public);

    let status = create_token(&mut endpoint.auth().await, &client_id, "not-the-secret").await.unwrap_err();

    assert_status(&status, Code::Unauthenticated, DENY, "INVALID_CREDENTIALS", "occoder.auth");
}

#[tokio::test]
async fn missing_credentials_are_unauthenticated() {
    let endpoint = shared_server();

    let status = endpoint.auth().await.create_token(pb::CreateTokenRequest::default()).await.unwrap_err();

    assert_status(&status, Code::Unauthenticated, DENY, "INVALID_BASIC_HEADER", "occoder.auth");
}

#[tokio::test]
async fn tampered_token_is_unauthenticated() {
    let endpoint = shared_server();
    let token = endpoint.token_for(Role::Public).await;
    let mut tampered = token.into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let status = list_topics(endpoint, &tampered).await.unwrap_err();

    assert_status(&status, Code::Unauthenticated, DENY, "TOKEN_INVALID", "occoder.auth");
}

#[tokio::test]
async fn removed_client_token_is_revoked() {
    let endpoint = shared_server();
    let (client_id, secret) = endpoint.add_client(Role::Public);
    let token = create_token(&mut endpoint.auth().await, &client_id, &secret).await.unwrap().access_token;
    assert!(list_topics(endpoint, &token).await.is_ok());

    ClientRegistry::open(&endpoint.data_dir).unwrap().remove(&client_id).unwrap();
    let status = list_topics(endpoint, &token).await.unwrap_err();
    let reissue = create_token(&mut endpoint.auth().await, &client_id, &secret).await.unwrap_err();

    assert_status(&status, Code::Unauthenticated, DENY, "TOKEN_REVOKED", "occoder.auth");
    assert_status(&reissue, Code::Unauthenticated, DENY, "INVALID_CREDENTIALS", "occoder.auth");
}

#[tokio::test]
async fn rotated_secret_revokes_old_token() {
    let endpoint = shared_server();
    let (client_id, secret) = endpoint.add_client(Role::Partner);
    let token = create_token(&mut endpoint.auth().await, &client_id, &secret).await.unwrap().access_token;

    let new_secret = ClientRegistry::open(&endpoint.data_dir).unwrap().rotate_secret(&client_id).unwrap();
    let old_token = list_topics(endpoint, &token).await.unwrap_err();
    let old_secret = create_token(&mut endpoint.auth().await, &client_id, &secret).await.unwrap_err();
    let new_token = create_token(&mut endpoint.auth().await, &client_id, new_secret.expose()).await.unwrap();

    assert_status(&old_token, Code::Unauthenticated, DENY, "TOKEN_REVOKED", "occoder.auth");
    assert_eq!(old_secret.code(), Code::Unauthenticated);
    assert!(list_topics(endpoint, &new_token.access_token).await.is_ok());
}

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    let server = TestServer::start(|config| config.auth.token_ttl_secs = 1).await;
    let endpoint = server.endpoint();
    let token = endpoint.token_for(Role::Public).await;

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let status = list_topics(&endpoint, &token).await.unwrap_err();

    assert_status(&status, Code::Unauthenticated, DENY, "TOKEN_EXPIRED", "occoder.auth");
}

#[tokio::test]
async fn per_second_limit_gives_retry_info() {
    let server = TestServer::start(|config| {
        config.auth.requests_per_second = 1.0;
        config.auth.burst = 1;
    })
    .await;
    let endpoint = server.endpoint();
    let token = endpoint.token_for(Role::Public).await;

    let first = list_topics(&endpoint, &token).await;
    let second = list_topics(&endpoint, &token).await.unwrap_err();

    assert!(first.is_ok(), "{first:?}");
    assert_status(&second, Code::ResourceExhausted, "Too Many Requests", "RATE_LIMITED", "occoder.auth");
    let retry = second.get_details_retry_info().expect("RetryInfo").retry_delay.expect("a retry delay");
    assert!(retry > Duration::ZERO, "{retry:?}");
    assert!(retry <= Duration::from_secs(1), "{retry:?}");

    tokio::time::sleep(retry + Duration::from_millis(50)).await;
    assert!(list_topics(&endpoint, &token).await.is_ok());
}

#[tokio::test]
async fn daily_ceiling_survives_restart() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    config.auth.daily_limit_public = 3;
    config.auth.daily_limit_partner = 5;
    let server = TestServer::start_with(config.clone(), data_dir).await;
    let endpoint = server.endpoint();
    let token = endpoint.token_for(Role::Public).await;

    for call in 1..=3 {
        assert!(list_topics(&endpoint, &token).await.is_ok(), "call {call} is within the ceiling");
    }
    let over = list_topics(&endpoint, &token).await.unwrap_err();

    assert_status(&over, Code::ResourceExhausted, "Limit Exceeded", "DAILY_LIMIT_EXCEEDED", "occoder.auth");
    assert!(over.get_details_retry_info().and_then(|info| info.retry_delay).is_some());

    let TestServer { handle, data_dir, .. } = server;
    handle.shutdown().await.unwrap();
    let restarted = TestServer::start_with(config, data_dir).await;
    let after_restart = list_topics(&restarted.endpoint(), &token).await.unwrap_err();

    assert_status(&after_restart, Code::ResourceExhausted, "Limit Exceeded", "DAILY_LIMIT_EXCEEDED", "occoder.auth");
}

#[tokio::test]
async fn partner_ceiling_is_separate() {
    let server = TestServer::start(|config| {
        config.auth.daily_limit_public = 1;
        config.auth.daily_limit_partner = 2;
    })
    .await;
    let endpoint = server.endpoint();
    let partner = endpoint.token_for(Role::Partner).await;

    let results = [list_topics(&endpoint, &partner).await, list_topics(&endpoint, &partner).await];
    let third = list_topics(&endpoint, &partner).await.unwrap_err();

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(third.code(), Code::ResourceExhausted);
}
