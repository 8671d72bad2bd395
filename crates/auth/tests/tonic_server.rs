//! The layer inside a real tonic server on 127.0.0.1, called over HTTP/2.

mod common;

use common::Fixture;
use http::{Request, header};
use occoder_auth::{AuthLayer, Credentials, Role};
use tonic::Code;
use tonic::body::Body;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tower::ServiceExt;

/// Sends an empty unary gRPC call and returns the status from the response headers.
async fn call(channel: &Channel, path: &str, token: Option<&str>) -> Code {
    let mut request = Request::builder()
        .method("POST")
        .uri(format!("http://127.0.0.1{path}"))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Body::empty()).unwrap();

    let response = channel.clone().oneshot(request).await.unwrap();
    // Both the layer's rejections and the router's UNIMPLEMENTED are trailers-only responses.
    tonic::Status::from_header_map(response.headers())
        .expect("grpc-status in the response headers")
        .code()
}

#[tokio::test]
async fn layer_guards_tonic_routes() {
    let fixture = Fixture::with_defaults();
    let client = fixture.add_client(Role::Public);
    let credentials = Credentials::new(client.client_id.clone(), client.secret.expose());
    let token = fixture.access.issue_token(&credentials).unwrap().token;

    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = incoming.local_addr().unwrap();
    let layer = AuthLayer::new(fixture.access.clone());
    let server = tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_routes(Routes::default())
            .serve_with_incoming(incoming),
    );

    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // No service is registered, so a call that passes the layer ends in UNIMPLEMENTED.
    let path = "/occoder.v1.Coding/Code";
    assert_eq!(call(&channel, path, None).await, Code::Unauthenticated);
    assert_eq!(
        call(&channel, path, Some("forged")).await,
        Code::Unauthenticated
    );
    assert_eq!(
        call(&channel, path, Some(&token)).await,
        Code::Unimplemented
    );
    assert_eq!(
        call(&channel, path, Some(&token)).await,
        Code::ResourceExhausted
    );
    assert_eq!(
        call(&channel, "/grpc.health.v1.Health/Check", None).await,
        Code::Unimplemented
    );
    assert_eq!(fixture.access.daily_usage(&client.client_id), 1);

    server.abort();
}
