//! Cross-origin access for single-page apps on the allowed origins, in bearer mode: no
//! cookies cross origins (`allow_credentials` stays off).
//!
//! tower-http's `CorsLayer` answers preflights and the requests that name an origin. The
//! rest, most of the traffic (proxies, services, command lines), only ever get the same
//! two headers from it, `Vary` and `Access-Control-Expose-Headers`: they get them here
//! as constants, without the layer's per-request copy of its rules and map of headers.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::header::{
    ACCESS_CONTROL_EXPOSE_HEADERS, AUTHORIZATION, CONTENT_TYPE, ORIGIN, RETRY_AFTER, VARY,
    WWW_AUTHENTICATE,
};
use axum::http::{HeaderValue, Method, Request, Response};
use futures_util::FutureExt as _;
use futures_util::future::{Either, Map};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// What `CorsLayer` varies on by default: the request headers of a preflight.
const VARY_ON: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);
/// The headers `rules` exposes, as `CorsLayer` joins them.
const EXPOSED: HeaderValue = HeaderValue::from_static("www-authenticate,retry-after");

/// The CORS rules for `origins`.
fn rules(origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE])
        .expose_headers([WWW_AUTHENTICATE, RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

/// The CORS layer of the router, for the allowed `origins`.
pub(crate) fn layer(origins: &[HeaderValue]) -> Cors {
    Cors {
        rules: Arc::new(rules(origins)),
    }
}

/// Applies the CORS rules; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Cors {
    rules: Arc<CorsLayer>,
}

impl<S> Layer<S> for Cors {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsService {
            rules: Arc::clone(&self.rules),
            inner,
        }
    }
}

/// The service of [`Cors`].
#[derive(Debug, Clone)]
pub(crate) struct CorsService<S> {
    rules: Arc<CorsLayer>,
    inner: S,
}

/// Adds what `CorsLayer` adds to an answer to a request that names no origin.
type SameOrigin<F, B, E> = Map<F, fn(Result<Response<B>, E>) -> Result<Response<B>, E>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CorsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<
        SameOrigin<S::Future, ResBody, S::Error>,
        tower_http::cors::ResponseFuture<S::Future>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.method() == Method::OPTIONS || request.headers().contains_key(ORIGIN) {
            // The inner service was made ready for this call: it goes to the layer, and
            // a clone stays for the next one.
            let next = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, next);
            return Either::Right(self.rules.layer(ready).call(request));
        }
        let add_headers: fn(_) -> _ = |answer: Result<Response<ResBody>, S::Error>| {
            answer.map(|mut response| {
                let headers = response.headers_mut();
                // Like `CorsLayer`: the handler's own `Vary` stays.
                headers.append(VARY, VARY_ON);
                headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
                response
            })
        };
        Either::Left(self.inner.call(request).map(add_headers))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use tower::ServiceExt as _;

    use super::*;

    /// An answer with a `Vary` of its own.
    async fn answer(_request: Request<Body>) -> Result<Response<Body>, Infallible> {
        let mut response = Response::new(Body::empty());
        response
            .headers_mut()
            .insert(VARY, HeaderValue::from_static("accept-encoding"));
        Ok(response)
    }

    /// The headers of the answers of `CorsLayer` itself and of [`Cors`] to `request`.
    async fn both(request: impl Fn() -> Request<Body>) -> [Vec<(String, String)>; 2] {
        let origins = [HeaderValue::from_static("https://app.example")];
        let by_layer = rules(&origins)
            .layer(tower::service_fn(answer))
            .oneshot(request())
            .await
            .unwrap();
        let by_shortcut = layer(&origins)
            .layer(tower::service_fn(answer))
            .oneshot(request())
            .await
            .unwrap();
        [by_layer, by_shortcut].map(|response| {
            response
                .headers()
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
                .collect()
        })
    }

    #[tokio::test]
    async fn a_request_without_origin_gets_the_headers_the_cors_layer_adds() {
        let request = || Request::get("/healthz").body(Body::empty()).unwrap();

        let [by_layer, by_shortcut] = both(request).await;

        assert_eq!(by_shortcut, by_layer);
        assert!(by_layer.iter().any(|(name, _)| name == "vary"));
    }

    #[tokio::test]
    async fn cross_origin_requests_and_preflights_go_through_the_cors_layer() {
        let cross_origin = || {
            Request::get("/auth/verify")
                .header(ORIGIN, "https://app.example")
                .body(Body::empty())
                .unwrap()
        };
        let preflight = || {
            Request::options("/auth/verify")
                .header(ORIGIN, "https://app.example")
                .header("access-control-request-method", "GET")
                .body(Body::empty())
                .unwrap()
        };
        let bare_options = || Request::options("/").body(Body::empty()).unwrap();

        let requests: [fn() -> Request<Body>; 3] = [cross_origin, preflight, bare_options];
        for request in requests {
            let [by_layer, by_shortcut] = both(request).await;

            assert_eq!(by_shortcut, by_layer);
        }
    }
}
