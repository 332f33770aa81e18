//! Serving an axum router to API Gateway, whichever stage it is deployed to.
//!
//! API Gateway hands a function the path with or without the stage name in
//! front: an HTTP API's `$default` stage has none, a named stage (`dev`, as
//! `serverless deploy` makes by default) puts `/dev` in `rawPath`, and a
//! REST API leaves it out of `path` while naming the stage in the request
//! context. `lambda_http` then puts `/{stage}` in front of the path for any
//! named stage. The routers know the paths without a stage (`/order`), so
//! [`without_stage`] takes the stage back off before routing: the same
//! router answers `.../dev/order` and `.../order`.
//!
//! [`run_refreshing`] serves a router built from secrets that are refreshed
//! (see [`crate::refresh`]): each request is routed by the router built from
//! the current values.

use std::sync::Arc;

use axum::Router;
use axum::http::Uri;
use axum::http::uri::PathAndQuery;
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use tower::ServiceExt;
use tower::util::MapRequest;

use crate::refresh::{Load, Refreshing};

/// `lambda_http::run` over [`without_stage`]: the `main` of an HTTP function.
pub async fn run(router: Router) -> Result<(), lambda_http::Error> {
    let router = without_stage(router);
    lambda_http::run(tower::service_fn(move |request: lambda_http::Request| {
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            crate::metrics::flush();
            response
        }
    }))
    .await
}

/// [`run`] for a router rebuilt whenever the values it is built from
/// change: the `main` of an HTTP function with secrets.
pub async fn run_refreshing<L: Load>(
    routers: Refreshing<L, Router>,
) -> Result<(), lambda_http::Error> {
    let routers = Arc::new(routers);
    lambda_http::run(tower::service_fn(move |request: lambda_http::Request| {
        let routers = routers.clone();
        async move {
            // Before routing, not on a timer: see `crate::refresh`.
            let router = Router::clone(&*routers.current().await);
            let response = without_stage(router).oneshot(request).await;
            crate::metrics::flush();
            response
        }
    }))
    .await
}

/// The router behind a step that removes the stage from the request path.
pub fn without_stage(
    router: Router,
) -> MapRequest<Router, fn(lambda_http::Request) -> lambda_http::Request> {
    MapRequest::new(router, strip_stage as fn(_) -> _)
}

fn strip_stage(mut request: lambda_http::Request) -> lambda_http::Request {
    let Some(stage) = stage_of(&request) else {
        return request;
    };
    let uri = request.uri();
    let Some(rest) = uri
        .path()
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(stage.as_str()))
    else {
        return request;
    };
    // `/dev/order` becomes `/order`, `/dev` becomes `/`; `/devices` stays.
    let path = match rest {
        "" => "/",
        rest if rest.starts_with('/') => rest,
        _ => return request,
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

/// The named stage of the request, `None` for `$default` or outside API
/// Gateway.
fn stage_of(request: &lambda_http::Request) -> Option<String> {
    let stage = match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.stage.as_deref(),
        RequestContext::ApiGatewayV1(context) => context.stage.as_deref(),
        _ => None,
    }?;
    (!stage.is_empty() && stage != "$default").then(|| stage.to_owned())
}
