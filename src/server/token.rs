//! The `occoder.v1.Auth` service: access tokens for client credentials.

use std::sync::Arc;

use occoder_auth::{AccessControl, AuthError, Credentials};
use tonic::{Request, Response, Status};

use super::request_id::RequestId;
use crate::proto::v1 as pb;
use crate::proto::v1::auth_server::Auth;

pub struct AuthService {
    access: Arc<AccessControl>,
}

impl AuthService {
    pub fn new(access: Arc<AccessControl>) -> AuthService {
        AuthService { access }
    }
}

/// Reads the credentials from the request fields or, when `client_id` is
/// empty, from `authorization: Basic base64(client_id:client_secret)`.
fn credentials(request: &Request<pb::CreateTokenRequest>) -> Result<Credentials, AuthError> {
    let message = request.get_ref();
    if !message.client_id.is_empty() {
        if message.client_secret.is_empty() {
            return Err(AuthError::InvalidCredentials { client_id: message.client_id.clone() });
        }
        return Ok(Credentials::new(message.client_id.clone(), message.client_secret.clone()));
    }
    let header = request
        .metadata()
        .get("authorization")
        .ok_or(AuthError::InvalidBasicHeader(
            "give client_id and client_secret, or the metadata `authorization: Basic base64(client_id:client_secret)`",
        ))?
        .to_str()
        .map_err(|_| AuthError::InvalidBasicHeader("the authorization metadata is not ASCII"))?;
    Credentials::from_basic_header(header)
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn create_token(&self, request: Request<pb::CreateTokenRequest>) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let request_id = RequestId::of(&request);
        let credentials = match credentials(&request) {
            Ok(credentials) => credentials,
            Err(error) => {
                tracing::info!(request_id, reason = error.reason(), "rejected token request without usable credentials");
                return Err(error.to_status());
            }
        };
        let client_id = credentials.client_id.clone();

        // Verifying the secret with argon2 takes tens of milliseconds of CPU.
        let access = Arc::clone(&self.access);
        let issued = tokio::task::spawn_blocking(move || access.issue_token(&credentials)).await.map_err(|error| {
            tracing::error!(request_id, client_id, %error, "token task failed");
            Status::internal(super::errors::INTERNAL)
        })?;

        match issued {
            Ok(token) => {
                let expires_in = (token.expires_at - self.access.now()).num_seconds().max(0);
                tracing::info!(request_id, client_id, token_id = %token.token_id, "issued access token over gRPC");
                Ok(Response::new(pb::CreateTokenResponse {
                    access_token: token.token,
                    token_type: "Bearer".to_owned(),
                    expires_in,
                    expires_at: Some(super::coder::timestamp(token.expires_at)),
                }))
            }
            Err(error) => {
                if error.code() == tonic::Code::Internal {
                    tracing::error!(request_id, client_id, %error, "token request failed");
                }
                Err(error.to_status())
            }
        }
    }
}
