//! Tower layer that gives every call a request id and logs failed calls.
//!
//! The id is a random UUID, stored in the request extensions as
//! [`RequestId`] for the handlers' logs and error details, and returned in
//! the `x-request-id` response header (gRPC metadata), also on errors.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tonic::Code;
use tower::{Layer, Service};

/// Name of the metadata key that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of one call, in the request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// Reads the id that [`RequestIdLayer`] stored in a tonic request, or
    /// `-` when the request did not pass through the layer.
    pub fn of<T>(request: &tonic::Request<T>) -> String {
        request.extensions().get::<RequestId>().map_or_else(|| "-".to_owned(), |id| id.0.clone())
    }
}

/// Counts of failed calls, reported when the server stops.
#[derive(Debug, Default)]
pub struct FailureCounts {
    /// Calls rejected with RESOURCE_EXHAUSTED (rate limits and daily ceilings).
    pub over_limit: AtomicU64,
    /// Calls that ended with any other error status.
    pub other: AtomicU64,
}

#[derive(Clone, Debug, Default)]
pub struct RequestIdLayer {
    counts: Arc<FailureCounts>,
}

impl RequestIdLayer {
    pub fn new(counts: Arc<FailureCounts>) -> RequestIdLayer {
        RequestIdLayer { counts }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner, counts: Arc::clone(&self.counts) }
    }
}

#[derive(Clone, Debug)]
pub struct RequestIdService<S> {
    inner: S,
    counts: Arc<FailureCounts>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestIdService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let id = uuid::Uuid::new_v4().to_string();
        let path = request.uri().path().to_owned();
        request.extensions_mut().insert(RequestId(id.clone()));
        let counts = Arc::clone(&self.counts);
        let future = self.inner.call(request);

        Box::pin(async move {
            let mut response = future.await?;
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            // Failed unary calls are trailers-only responses, so their status
            // is already in the headers. Streams that fail later report it in
            // the trailers, which the handlers log themselves.
            if let Some(status) = tonic::Status::from_header_map(response.headers())
                && status.code() != Code::Ok
            {
                log_failure(&counts, &id, &path, status.code());
            }
            Ok(response)
        })
    }
}

/// Logs a failed call without its message, which may quote request fields.
/// Over-limit rejections are only counted and logged at debug level, since a
/// busy client can cause thousands of them.
fn log_failure(counts: &FailureCounts, request_id: &str, path: &str, code: Code) {
    match code {
        Code::ResourceExhausted => {
            counts.over_limit.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(request_id, path, ?code, "call rejected over a limit");
        }
        Code::Internal | Code::Unknown | Code::DataLoss => {
            counts.other.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(request_id, path, ?code, "call failed");
        }
        _ => {
            counts.other.fetch_add(1, Ordering::Relaxed);
            tracing::info!(request_id, path, ?code, "call failed");
        }
    }
}
