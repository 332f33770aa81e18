//! The API server: hyper's HTTP/1 in front of the three HTTP functions'
//! routers and the pages, as API Gateway is in front of them on AWS.
//!
//! It adds what API Gateway would: a deadline for each request's head and
//! body, limits on the head answered in problem+json, unknown routes
//! answered in problem+json, and a debug log of each request that names
//! its route but never what the client sent in the path or query.

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use lambda_kit::http::ApiError;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

/// Serves the API until `stop` is cancelled, then lets the requests in
/// flight finish.
///
/// As `axum::serve` does, plus a deadline for each request's head: a client
/// that trickles its headers (slowloris) is cut off after `header_timeout`
/// instead of holding a connection and a task for as long as it likes. The
/// body is bounded by the request timeout in [`api_router`].
pub(crate) async fn serve_http(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // Room above `head_limits`' own, so that a head over them reaches
        // the router and is answered in problem+json; past these hyper
        // answers by itself, in plain text.
        .max_headers(4 * MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: breathe, retry.
                    tracing::warn!(%error, "cannot accept a connection");
                    crate::mappings::pause(&stop, Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The API as API Gateway would present it: the three HTTP functions behind
/// one address, unknown routes answered in problem+json.
pub(crate) fn api_router(
    order: order::Deps,
    fulfilled: fulfilled::Deps,
    delivered: delivered::Deps,
    pages: Router,
    request_timeout: Duration,
) -> Router {
    Router::new()
        .merge(order::router(order))
        .merge(fulfilled::router(fulfilled))
        .merge(delivered::router(delivered))
        .merge(pages)
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        // A request that takes too long answers like a busy store: 503
        // problem+json with Retry-After (the work it started is idempotent).
        .layer(axum::middleware::from_fn(
            move |request: Request, next: Next| async move {
                match tokio::time::timeout(request_timeout, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => ApiError::Unavailable(format!(
                        "no answer within {} ms",
                        request_timeout.as_millis()
                    ))
                    .into_response(),
                }
            },
        ))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(axum::middleware::from_fn(head_limits))
}

/// The most bytes of a request target (path and query) the API reads.
const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header fields, and the most bytes of all their names and
/// values together, the API reads.
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses a request head larger than the API needs with `414` or `431`
/// in problem+json, before it is routed.
async fn head_limits(request: Request, next: Next) -> Response {
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return ApiError::UriTooLong.into_response();
    }
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge.into_response();
    }
    next.run(request).await
}

/// The span of one request, for the debug log: the method and the route
/// it matched (`/order/{order_id}`), never the path or query as sent, which
/// may carry anything a client puts there, tokens included.
/// A request's span names the function that serves the route on AWS, so
/// a local log line says which of the seven it came from, as the log group
/// does there.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("(no route)", MatchedPath::as_str);
    let function = match route {
        "/order/fulfilled" => "fulfilled",
        "/order/delivered" => "delivered",
        _ => "order",
    };
    tracing::info_span!("request", function, method = %request.method(), route)
}
