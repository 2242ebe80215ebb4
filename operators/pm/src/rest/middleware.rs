//! Around every routed request: a tracing span with the route and correlation id, request
//! metrics, and a deadline. Unknown routes and methods answer in the same JSON error shape.
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{Instrument, info_span};

use super::Rest;
use super::error::ApiError;

use oaas_core::wire::CORRELATION_HEADER;

pub async fn observe(State(rest): State<Arc<Rest>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let correlation = req
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .unwrap_or_else(new_correlation_id);
    let span = info_span!("http", %method, %route, correlation_id = %correlation, status = tracing::field::Empty);
    let timeout = rest.settings.timeout;
    let mut response =
        match tokio::time::timeout(timeout, next.run(req).instrument(span.clone())).await {
            Ok(response) => response,
            Err(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the request took longer than {}s; the hub or a spoke is slow, try again",
                    timeout.as_secs()
                ),
            )
            .into_response(),
        };
    let status = response.status().as_u16();
    span.record("status", status);
    span.in_scope(|| {
        tracing::debug!(
            took_ms = started.elapsed().as_millis() as u64,
            "request served"
        )
    });
    rest.metrics
        .observe_request(&method, &route, status, started.elapsed());
    if let Ok(value) = HeaderValue::from_str(&correlation) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}

fn new_correlation_id() -> String {
    format!("{:016x}", rand_u64())
}

/// A random enough id without another dependency: the std hasher is randomly keyed.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

pub async fn not_found(State(rest): State<Arc<Rest>>, req: Request) -> ApiError {
    rest.metrics
        .observe_request(req.method().as_str(), "unmatched", 404, Default::default());
    ApiError::not_found(format!("route {} {}", req.method(), req.uri().path()))
}

pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
