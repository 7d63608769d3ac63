//! [`GuardLayer`]: the guard as tower middleware, for protecting a whole router (or any
//! tower service) at once instead of naming [`Identity`] in every handler. A request
//! with a valid token goes on with its [`Identity`] in the request extensions; any other
//! is answered 401 before the inner service sees it.
//!
//! ```no_run
//! use axum::{Extension, Router, routing::get};
//! use tessera_guard::{Guard, GuardLayer, Identity};
//!
//! async fn whoami(Extension(Identity(claims)): Extension<Identity>) -> String {
//!     claims.sub
//! }
//!
//! async fn greeting(caller: Option<Extension<Identity>>) -> String {
//!     match caller {
//!         Some(Extension(Identity(claims))) => format!("hello, {}", claims.sub),
//!         None => "hello, stranger".to_owned(),
//!     }
//! }
//!
//! fn routes(guard: Guard) -> Router {
//!     let private = Router::new()
//!         .route("/whoami", get(whoami))
//!         .layer(GuardLayer::new(guard.clone()));
//!     let public = Router::new()
//!         .route("/greeting", get(greeting))
//!         .layer(GuardLayer::optional(guard));
//!     private.merge(public)
//! }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::Request;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::{Guard, Identity};

/// Wraps services in a [`GuardService`]. [`GuardLayer::new`] requires a valid token;
/// [`GuardLayer::optional`] lets requests without an `Authorization` header through
/// anonymously, and still refuses a header that holds an invalid token (a client that
/// sends a bad token should hear so, not be treated as a stranger).
#[derive(Debug, Clone)]
pub struct GuardLayer {
    guard: Guard,
    optional: bool,
}

impl GuardLayer {
    /// Every request needs a valid bearer token.
    pub fn new(guard: Guard) -> Self {
        Self {
            guard,
            optional: false,
        }
    }

    /// Requests without an `Authorization` header pass with no [`Identity`]; those with
    /// one need it to hold a valid bearer token.
    pub fn optional(guard: Guard) -> Self {
        Self {
            guard,
            optional: true,
        }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GuardService {
            inner,
            guard: self.guard.clone(),
            optional: self.optional,
        }
    }
}

/// The service [`GuardLayer`] builds: checks the bearer token, as
/// [`Guard::check_async`] does, before calling the inner service.
#[derive(Debug, Clone)]
pub struct GuardService<S> {
    inner: S,
    guard: Guard,
    optional: bool,
}

impl<S, B> Service<Request<B>> for GuardService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request; a fresh clone waits for
        // the next one (tower's usual pattern for services called from a future).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let guard = self.guard.clone();
        let optional = self.optional;
        Box::pin(async move {
            if optional && !request.headers().contains_key(AUTHORIZATION) {
                return inner.call(request).await;
            }
            match guard.check_async(request.headers()).await {
                Ok(claims) => {
                    request.extensions_mut().insert(Identity(claims));
                    inner.call(request).await
                }
                Err(refusal) => Ok(refusal.into_response()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::Extension;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::{Router, body};
    use tessera_token::{
        KeyAlgorithm, KeySet, SigningKey, TokenIssuer, Validator, ValidatorConfig,
    };

    use super::*;
    use crate::unix_now;

    const ISSUER: &str = "https://auth.example";

    fn guard_and_token() -> (Guard, String) {
        let key = SigningKey::generate(KeyAlgorithm::EdDSA).unwrap();
        let keys = KeySet::new(vec![key.verifying_key()]);
        let validator = Validator::new(keys, ValidatorConfig::new(ISSUER, "tessera")).unwrap();
        let token = TokenIssuer::new(key, ISSUER, "tessera")
            .issue("user-7", "session-1", unix_now(), 900)
            .unwrap()
            .token;
        (Guard::new(validator), token)
    }

    async fn whoami(Extension(Identity(claims)): Extension<Identity>) -> String {
        claims.sub
    }

    async fn greeting(caller: Option<Extension<Identity>>) -> String {
        caller.map_or("stranger".to_owned(), |Extension(Identity(claims))| {
            claims.sub
        })
    }

    /// Whoever the handler behind `GuardLayer` and the `Identity` extractor sees.
    async fn both(identity: Identity, Extension(seen): Extension<Identity>) -> String {
        format!("{} {}", identity.0.sub, seen.0.sub)
    }

    async fn call(router: &Router, authorization: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        if let Some(value) = authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, value.parse().unwrap());
        }
        let response = Service::call(&mut router.clone(), request).await.unwrap();
        let status = response.status();
        let bytes = body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn the_layer_lets_valid_tokens_through_with_their_identity() {
        let (guard, token) = guard_and_token();
        let router = Router::new()
            .route("/", get(whoami))
            .layer(GuardLayer::new(guard));

        let (status, body) = call(&router, Some(&format!("Bearer {token}"))).await;

        assert_eq!((status, body.as_str()), (StatusCode::OK, "user-7"));
    }

    #[tokio::test]
    async fn the_layer_answers_401_before_the_handler_without_a_valid_token() {
        let (guard, token) = guard_and_token();
        let router = Router::new()
            .route("/", get(whoami))
            .layer(GuardLayer::new(guard));
        let tampered = format!("Bearer {token}x");

        for authorization in [None, Some("Bearer abc.def.ghi"), Some(tampered.as_str())] {
            let (status, body) = call(&router, authorization).await;

            assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
            assert!(body.contains("invalid_token"), "{body}");
        }
    }

    #[tokio::test]
    async fn the_optional_layer_serves_strangers_but_refuses_bad_tokens() {
        let (guard, token) = guard_and_token();
        let router = Router::new()
            .route("/", get(greeting))
            .layer(GuardLayer::optional(guard));

        assert_eq!(
            call(&router, None).await,
            (StatusCode::OK, "stranger".into())
        );
        assert_eq!(
            call(&router, Some(&format!("Bearer {token}"))).await,
            (StatusCode::OK, "user-7".into())
        );
        assert_eq!(
            call(&router, Some("Bearer abc.def.ghi")).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn the_identity_extractor_behind_the_layer_sees_the_same_caller() {
        let (guard, token) = guard_and_token();
        let router = Router::new()
            .route("/", get(both))
            .layer(GuardLayer::new(guard.clone()))
            .with_state(guard);

        let (status, body) = call(&router, Some(&format!("Bearer {token}"))).await;

        assert_eq!((status, body.as_str()), (StatusCode::OK, "user-7 user-7"));
    }

    async fn maybe(caller: Option<Identity>) -> String {
        caller.map_or("stranger".to_owned(), |Identity(claims)| claims.sub)
    }

    #[tokio::test]
    async fn an_optional_identity_is_none_without_a_header_and_401_with_a_bad_one() {
        let (guard, token) = guard_and_token();
        let router = Router::new().route("/", get(maybe)).with_state(guard);

        assert_eq!(
            call(&router, None).await,
            (StatusCode::OK, "stranger".into())
        );
        assert_eq!(
            call(&router, Some(&format!("Bearer {token}"))).await,
            (StatusCode::OK, "user-7".into())
        );
        assert_eq!(
            call(&router, Some("Basic dXNlcjpwYXNz")).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}
