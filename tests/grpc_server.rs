//! Server-wide behaviour over real tonic connections: health, reflection,
//! model loading, the security contact, bulk role checks and shutdown.

mod grpc_bulk_support;
mod grpc_support;

use std::path::Path;

use grpc_support::*;
use occoder::proto::v1 as pb;
use occoder::proto::v1::bulk_coder_client::BulkCoderClient;
use occoder_auth::Role;
use occoder_model::{Model, file};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

/// Copies the shipped OSCA model into `dir`, and adds a copy of it with a
/// new id, version 0 and an input format of occp_text only. Returns the
/// copy's id.
fn write_osca_models_with_narrow_copy(dir: &Path) -> String {
    let shipped = shipped_models_dir().join(OSCA_MODEL);
    std::fs::copy(&shipped, dir.join(OSCA_MODEL)).unwrap();

    let mut parts = file::load(&shipped).unwrap().into_parts();
    parts.metadata.model_id = uuid::Uuid::new_v4();
    parts.metadata.model_version = 0;
    parts.metadata.input_format = vec!["occp_text".to_owned()];
    let narrow = Model::from_parts(parts).unwrap();
    file::save(&narrow, &dir.join("osca-narrow.occm")).unwrap();
    narrow.metadata().model_id.to_string()
}

#[tokio::test]
async fn health_serving_for_each_service() {
    let server = TestServer::start(|_| {}).await;
    let mut health = HealthClient::new(server.endpoint().channel().await);

    for service in ["", "occoder.v1.Coder", "occoder.v1.BulkCoder", "occoder.v1.Auth"] {
        let response = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();

        assert_eq!(response.status(), ServingStatus::Serving, "service {service:?}");
    }
}

#[tokio::test]
async fn reflection_lists_services() {
    let server = TestServer::start(|_| {}).await;
    let mut reflection = ServerReflectionClient::new(server.endpoint().channel().await);
    let requests = [
        ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("occoder.v1.CodeRequest".into())),
        },
    ];

    let mut responses = reflection.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner();

    let Some(MessageResponse::ListServicesResponse(list)) = responses.message().await.unwrap().unwrap().message_response else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    for expected in ["occoder.v1.Coder", "occoder.v1.BulkCoder", "occoder.v1.Auth", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|name| name == expected), "{expected} missing from {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) = responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn missing_topic_model_and_malformed_record() {
    let models = tempfile::tempdir().unwrap();
    let narrow_id = write_osca_models_with_narrow_copy(models.path());
    let models_dir = models.path().to_path_buf();
    let server = TestServer::start(move |config| config.models_dir = models_dir).await;
    let endpoint = server.endpoint();
    let token = endpoint.token_for(Role::Public).await;
    let mut coder = endpoint.coder().await;

    let no_models = coder
        .get_latest_model(authorized(pb::GetLatestModelRequest { topic: "anzsco".into() }, &token))
        .await
        .unwrap_err();
    let no_models_code = coder.code(authorized(code_one("anzsco", record("chef", "")), &token)).await.unwrap_err();
    let listed = coder
        .list_models(authorized(pb::ListModelsRequest { topic: "osca".into() }, &token))
        .await
        .unwrap()
        .into_inner()
        .models;

    assert_status(&no_models, Code::Internal, "No models found for topic", "NO_MODELS_FOR_TOPIC", "occoder");
    assert_status(&no_models_code, Code::Internal, "No models found for topic", "NO_MODELS_FOR_TOPIC", "occoder");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].model_id, narrow_id, "version 0 is listed last");

    let mut malformed = code_batch("osca", vec![record("chef", ""), record("software developer", "writing code")]);
    malformed.model_id = Some(narrow_id.clone());
    let status = coder.code(authorized(malformed, &token)).await.unwrap_err();

    assert_status(&status, Code::InvalidArgument, "Malformed record found in request", "MALFORMED_RECORD", "occoder");
    assert_eq!(violation_fields(&status), ["records[1].tasks_text"]);

    let mut title_only = code_one("osca", record("software developer", ""));
    title_only.model_id = Some(narrow_id.clone());
    let response = coder.code(authorized(title_only, &token)).await.unwrap().into_inner();

    assert_eq!(response.model_id, narrow_id);
}

#[tokio::test]
async fn unloadable_file_is_skipped() {
    let models = tempfile::tempdir().unwrap();
    std::fs::copy(shipped_models_dir().join(ANZSCO_MODEL), models.path().join(ANZSCO_MODEL)).unwrap();
    std::fs::write(models.path().join("broken.occm"), b"not a model").unwrap();
    let models_dir = models.path().to_path_buf();
    let server = TestServer::start(move |config| config.models_dir = models_dir).await;
    let token = server.endpoint().token_for(Role::Public).await;

    let response = server
        .endpoint()
        .coder()
        .await
        .code(authorized(code_one("anzsco", record("software engineer", "designing and building software systems")), &token))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.responses[0].result[0].code_category, "261313");
}

#[tokio::test]
async fn no_loadable_model_stops_server() {
    let models = tempfile::tempdir().unwrap();
    std::fs::write(models.path().join("broken.occm"), b"not a model").unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path());
    config.models_dir = models.path().to_path_buf();

    let handle = occoder::server::start(config).await.unwrap();
    let error = handle.ready().await.unwrap_err();

    assert!(error.to_string().contains("no model could be loaded"), "{error}");
    let stopped = handle.join().await.unwrap_err();
    assert!(stopped.to_string().contains("no model could be loaded"), "{stopped}");
}

#[tokio::test]
async fn security_contact_is_public() {
    let server = TestServer::start(|config| {
        config.security.contact = vec!["mailto:security@example.org".into()];
        config.security.expires = Some("2030-01-01T00:00:00Z".parse().unwrap());
    })
    .await;

    let contact = server.endpoint().coder().await.get_security_contact(pb::GetSecurityContactRequest {}).await.unwrap().into_inner();

    assert_eq!(contact.contact, ["mailto:security@example.org"]);
    assert_eq!(contact.text, "Contact: mailto:security@example.org\nExpires: 2030-01-01T00:00:00Z\n");
    assert_eq!(contact.expires.unwrap().seconds, 1_893_456_000);
}

#[tokio::test]
async fn bulk_needs_partner_role() {
    let server = TestServer::start(|_| {}).await;
    let endpoint = server.endpoint();
    let public = endpoint.token_for(Role::Public).await;
    let partner = endpoint.token_for(Role::Partner).await;
    let mut bulk = BulkCoderClient::new(endpoint.channel().await);
    let request = || pb::CreateOperationRequest { topic: "osca".into(), model_id: None };

    let denied = bulk.create_operation(authorized(request(), &public)).await.unwrap_err();
    let admitted = bulk.create_operation(authorized(request(), &partner)).await;

    assert_status(
        &denied,
        Code::PermissionDenied,
        "User is not authorized to access this resource with an explicit deny",
        "ROLE_NOT_PERMITTED",
        "occoder.auth",
    );
    assert!(denied.message().contains("has the public role"), "{}", denied.message());
    assert!(denied.message().contains("occoder clients add --role partner"), "{}", denied.message());
    // The partner passes access control and reaches the bulk service,
    // whatever that service then returns.
    if let Err(status) = admitted {
        assert_ne!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_ne!(status.code(), Code::Unauthenticated, "{status:?}");
    }
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let server = TestServer::start(|_| {}).await;
    let address = server.handle.local_addr();

    server.handle.shutdown().await.unwrap();

    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

/// A CodeStream stays in progress until its client closes it, so the
/// drain is tested without racing a call against the shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_call_in_progress() {
    let server = TestServer::start(|_| {}).await;
    let endpoint = server.endpoint();
    let token = endpoint.token_for(Role::Partner).await;
    let mut bulk = BulkCoderClient::new(endpoint.channel().await);
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let record = grpc_bulk_support::stream_record(&(Some("1".into()), "software developer".into(), "writing code".into()));
    sender.send(grpc_bulk_support::stream_setup("osca")).await.unwrap();
    sender.send(record.clone()).await.unwrap();
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let mut responses = bulk.code_stream(authorized(stream, &token)).await.expect("CodeStream starts").into_inner();
    let first = responses.message().await.unwrap().expect("the first record is answered");

    let shutdown = tokio::spawn(server.handle.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!shutdown.is_finished(), "the server stopped while a stream was still open");
    sender.send(record).await.unwrap();
    let second = responses.message().await.expect("the stream survives the shutdown").expect("the second record is answered");
    drop(sender);
    let end = responses.message().await.expect("the stream ends cleanly");

    assert_eq!(first.code_status(), pb::CodeStatus::Successful);
    assert_eq!(second.code_status(), pb::CodeStatus::Successful);
    assert!(end.is_none(), "no response follows the last record");
    shutdown.await.unwrap().expect("the server stops once the stream has ended");
}
