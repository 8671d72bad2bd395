//! Tower middleware that authenticates and rate-limits gRPC requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower::{Layer, Service};

use crate::{AccessControl, AuthError, OperationClass};

/// Paths that [`AuthLayer::new`] lets through without a token: the gRPC
/// health service and both versions of the reflection service.
///
/// An entry that ends with `/` matches every method of that service.
pub const DEFAULT_UNAUTHENTICATED_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Extracts the token from an `authorization` header value of the form `Bearer <token>`.
///
/// The scheme name is case-insensitive and surrounding whitespace is ignored.
///
/// # Errors
/// [`AuthError::MissingToken`] if the value does not use the Bearer scheme or the token is empty.
pub fn parse_bearer(value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MissingToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

/// Set of gRPC paths: exact method paths and service prefixes ending with `/`.
#[derive(Clone, Debug, Default)]
struct PathSet {
    entries: Vec<String>,
}

impl PathSet {
    fn contains(&self, path: &str) -> bool {
        self.entries.iter().any(|entry| {
            if entry.ends_with('/') {
                path.starts_with(entry.as_str())
            } else {
                path == entry
            }
        })
    }
}

/// Tower [`Layer`] that wraps a tonic server's routes with [`AuthService`].
///
/// Requests whose path is in the unauthenticated set pass through unchanged.
/// For every other request, the service reads `authorization: Bearer <token>`
/// and verifies the token. It then checks that the role may call the path's
/// [`OperationClass`] and counts the request against the per-second rate and
/// the daily ceiling. An admitted request reaches the inner service with the
/// [`Principal`](crate::Principal) in its extensions. A rejected one gets the
/// gRPC status of [`AuthError::to_status`] and never reaches the inner service.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    access: Arc<AccessControl>,
    unauthenticated: Arc<PathSet>,
    bulk: Arc<PathSet>,
}

impl AuthLayer {
    /// Creates a layer that lets [`DEFAULT_UNAUTHENTICATED_PATHS`] through and
    /// treats every other path as [`OperationClass::Synchronous`].
    pub fn new(access: Arc<AccessControl>) -> Self {
        let defaults = DEFAULT_UNAUTHENTICATED_PATHS
            .iter()
            .map(|path| (*path).to_owned())
            .collect();
        Self {
            access,
            unauthenticated: Arc::new(PathSet { entries: defaults }),
            bulk: Arc::new(PathSet::default()),
        }
    }

    /// Adds a path that needs no token, such as the token RPC
    /// (`/package.Service/Method`) or a whole service (`/package.Service/`).
    pub fn allow_unauthenticated(mut self, path: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.unauthenticated)
            .entries
            .push(path.into());
        self
    }

    /// Marks a path (exact, or a service prefix ending with `/`) as
    /// [`OperationClass::Bulk`], so only partner clients may call it.
    pub fn bulk(mut self, path: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.bulk).entries.push(path.into());
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Tower [`Service`] created by [`AuthLayer`]; generic over request and response bodies.
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> AuthService<S> {
    fn authorize<B>(&self, request: &Request<B>) -> Result<crate::Principal, AuthError> {
        let value = request
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::MissingToken)?
            .to_str()
            .map_err(|_| AuthError::InvalidToken("the authorization header is not ASCII"))?;
        let token = parse_bearer(value)?;

        let class = if self.layer.bulk.contains(request.uri().path()) {
            OperationClass::Bulk
        } else {
            OperationClass::Synchronous
        };
        self.layer.access.authorize(token, class)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if self.layer.unauthenticated.contains(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }

        match self.authorize(&request) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Box::pin(self.inner.call(request))
            }
            Err(error) => {
                log_rejection(request.uri().path(), &error);
                let response = error.to_status().into_http::<ResBody>();
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

/// Logs a rejected request: internal failures as errors, the rest at debug
/// level because every over-limit request of a busy client ends here.
fn log_rejection(path: &str, error: &AuthError) {
    let code = error.code();
    if code == tonic::Code::Internal {
        tracing::error!(path, %error, "access control failed");
    } else {
        tracing::debug!(path, ?code, reason = error.reason(), %error, "rejected request");
    }
}
