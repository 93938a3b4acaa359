//! HTTP: the router, middleware, TLS and the accept loop.
//!
//! Architecture invariant: only `src/http` knows HTTP and JSON; it turns requests into calls on
//! the other modules and their errors into responses.

pub mod api;
mod error;
mod health;
pub mod server;
pub mod tls;

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

pub use crate::state::AppState;
pub use error::{ApiError, ErrorBody};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface, with its middleware; tests may call it with `oneshot`.
pub fn router(state: AppState) -> Router {
    let server = &state.settings.server;
    let body_limit = server.request_body_limit_bytes;
    let timeout = Duration::from_secs(server.request_timeout_secs);
    Router::new()
        .merge(health::routes())
        .merge(api::routes())
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
        // Layers run bottom-up on the way in: the request id exists before the trace span
        // opens, and every response, errors included, gets the security headers.
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // Everything Steward serves is either sensitive or per-user: nothing may be cached
        // anywhere, framed, sniffed as another type, or reached over plain HTTP later.
        .layer(set_header(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ))
        .layer(set_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set_header(header::CACHE_CONTROL, "no-store"))
        .layer(set_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(set_header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .layer(axum::middleware::from_fn(count_request))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(record_response),
        )
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, MakeRequestUuid))
}

fn set_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
}

/// Counts each answered request by route template and status (metrics, when enabled).
async fn count_request(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    crate::metrics::request(&route, response.status().as_u16());
    response
}

/// One span per request: method, route template (never the concrete path, which may hold a
/// token), request id. Headers are deliberately not recorded.
fn request_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", MatchedPath::as_str);
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    )
}

fn record_response(
    response: &axum::http::Response<axum::body::Body>,
    latency: Duration,
    span: &Span,
) {
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency.as_millis() as u64);
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_millis() as u64,
        "response"
    );
}
