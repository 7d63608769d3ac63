//! The OpenAPI 3.1 description of the HTTP contract, served at `GET /openapi.json` with
//! Swagger UI at `/docs`. Each operation is described by the `#[utoipa::path]`
//! annotation next to its handler and each body by its type's `ToSchema`; each route
//! module lists its operations in its `Api`, and this file merges those and holds what
//! they share: the error body, the reusable refusals and the security schemes. A test
//! checks that every route of the router is described.

use std::sync::LazyLock;

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::cookies;
use crate::routes::{
    accounts, browser, notes, oauth, page, prometheus, resource_servers, well_known,
};

/// Where the document is served.
pub(crate) const DOCUMENT_PATH: &str = "/openapi.json";
/// Where Swagger UI is served.
pub(crate) const DOCS_PATH: &str = "/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "A self-hosted authentication service: the password and \
            refresh-token grants, sessions, JWKS and discovery for resource servers, \
            and a cookie mode for the browser page.\n\n\
            Every refusal is JSON `{\"error\", \"error_description\"}`. A request \
            without a valid access token gets 401 with \
            `WWW-Authenticate: Bearer error=\"invalid_token\"` (RFC 6750 §3). Besides \
            the statuses listed per operation, any path answers 405 to a method it \
            does not have (with `Allow`), 404 to a path that does not exist, and 408 \
            to a request not received within 30 seconds."
    ),
    paths(document, docs_redirect, docs_page, docs_file),
    components(
        schemas(ErrorBody, ErrorCode),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
            Throttled,
            ServerError,
            Unavailable,
        )
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "accounts", description = "Sign-up, password change and the caller's identity"),
        (name = "oauth", description = "The token endpoint (RFC 6749), revocation (RFC 7009) \
            and introspection (RFC 7662)"),
        (name = "sessions", description = "The caller's sessions (devices) and logout"),
        (name = "notes", description = "The demo protected resource: each user's own notes"),
        (name = "resource servers", description = "What other services ask: forward-auth \
            and the feed of ended sessions"),
        (name = "discovery", description = "Public keys and the discovery document"),
        (name = "operations", description = "Liveness and readiness probes"),
        (name = "browser", description = "The browser page's cookie mode"),
        (name = "page", description = "The browser page and its scripts"),
        (name = "documentation", description = "This document and Swagger UI"),
    )
)]
pub(crate) struct ApiDoc;

/// Built once: the document does not change while the server runs.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(|| {
    let mut document = ApiDoc::openapi();
    for part in [
        accounts::Api::openapi(),
        oauth::Api::openapi(),
        notes::Api::openapi(),
        resource_servers::Api::openapi(),
        well_known::Api::openapi(),
        browser::Api::openapi(),
        page::Api::openapi(),
        prometheus::Api::openapi(),
    ] {
        document.merge(part);
    }
    document
});

/// The routes of the document and of Swagger UI, merged into the service's router.
pub(crate) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    // Swagger UI's files are compiled in; it must not send the document to any
    // online validator, and the page's content security policy would refuse it anyway.
    let config = Config::new([DOCUMENT_PATH]).validator_url("none");
    Router::new()
        .route(DOCUMENT_PATH, get(document))
        .merge(SwaggerUi::new(DOCS_PATH).config(config))
}

/// The body of every refusal: a machine-readable code and a text safe to show.
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // Describes the body that `ApiError` renders; never built.
pub(crate) struct ErrorBody {
    error: ErrorCode,
    /// A human-readable explanation that reveals nothing internal.
    error_description: String,
}

/// Every `error` code the service answers with.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // Describes `ApiError`'s codes; never built.
pub(crate) enum ErrorCode {
    InvalidToken,
    InvalidGrant,
    InvalidRequest,
    UnsupportedGrantType,
    UsernameTaken,
    CsrfRefused,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    SlowDown,
    TemporarilyUnavailable,
    ServerError,
}

/// The request is malformed: a missing or repeated parameter, a body that does not
/// parse (`invalid_request`); on the token endpoint also `invalid_grant` (wrong
/// credentials, a spent or unknown refresh token) and `unsupported_grant_type`.
#[derive(ToResponse)]
#[allow(dead_code)]
pub(crate) struct BadRequest(ErrorBody);

/// The access token (or credential) is missing, invalid or expired, or its session
/// has ended (RFC 6750 §3.1).
#[derive(ToResponse)]
#[response(headers(
    ("WWW-Authenticate" = String, description = "`Bearer error=\"invalid_token\"`")
))]
#[allow(dead_code)]
pub(crate) struct Unauthorized(ErrorBody);

/// A cookie-authenticated unsafe request without the anti-CSRF token, or from another
/// origin (`csrf_refused`).
#[derive(ToResponse)]
#[allow(dead_code)]
pub(crate) struct Forbidden(ErrorBody);

/// No such resource, or none that belongs to the caller (`not_found`).
#[derive(ToResponse)]
#[allow(dead_code)]
pub(crate) struct NotFound(ErrorBody);

/// The body is over 64 KiB (`payload_too_large`).
#[derive(ToResponse)]
#[allow(dead_code)]
pub(crate) struct PayloadTooLarge(ErrorBody);

/// The body is not of an accepted media type (`unsupported_media_type`).
#[derive(ToResponse)]
#[allow(dead_code)]
pub(crate) struct UnsupportedMediaType(ErrorBody);

/// Well-formed input that breaks a rule, such as a short password or an empty title
/// (`validation_failed`).
#[derive(ToResponse)]
#[allow(dead_code)]
pub(crate) struct Unprocessable(ErrorBody);

/// Too many login attempts for this account or client (`slow_down`); retry after the
/// given number of seconds.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait")))]
#[allow(dead_code)]
pub(crate) struct Throttled(ErrorBody);

/// A fault of the server (`server_error`); the body carries no internals.
#[derive(ToResponse)]
#[allow(dead_code)]
pub(crate) struct ServerError(ErrorBody);

/// The database or the password-hashing pool is busy or away
/// (`temporarily_unavailable`).
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait")))]
#[allow(dead_code)]
pub(crate) struct Unavailable(ErrorBody);

/// The ways a caller proves who it is, named by the operations' `security`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "bearer",
            bearer(
                "An access token (a JWT) from `POST /oauth/token`, as \
                 `Authorization: Bearer <token>`.",
            ),
        );
        components.add_security_scheme(
            "resource_server",
            bearer(
                "The resource-server credential (the content of \
                 `introspection_secret_file`), as `Authorization: Bearer <credential>`. \
                 Without that setting the operations that take it answer 404.",
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            bearer(
                "The scrape token (the content of `metrics_token_file`), as \
                 `Authorization: Bearer <token>`; without that setting `/metrics` is open.",
            ),
        );
        let cookie = |name: &str, description: &str| {
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                name,
                description,
            )))
        };
        components.add_security_scheme(
            "access_cookie",
            cookie(
                cookies::ACCESS_COOKIE,
                "The browser's access token, set by `/auth/browser/login` (HttpOnly).",
            ),
        );
        components.add_security_scheme(
            "refresh_cookie",
            cookie(
                cookies::REFRESH_COOKIE,
                "The browser's refresh token, sent only to `/auth/browser` (HttpOnly).",
            ),
        );
        components.add_security_scheme(
            "csrf_cookie",
            cookie(
                cookies::CSRF_COOKIE,
                "The anti-CSRF token the page reads; unsafe cookie-authenticated \
                 requests echo it in `X-CSRF-Token`.",
            ),
        );
        components.add_security_scheme(
            "csrf_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "The anti-CSRF cookie's value, required with the cookies on unsafe \
                 methods, from a page of this server's own origin.",
            ))),
        );
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "documentation",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json",
            body = Object),
    )
)]
pub(crate) async fn document() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(&DOCUMENT)
}

// Swagger UI's own routes (`utoipa_swagger_ui`); these annotations only describe them.

/// `GET /docs`: Swagger UI lives at `/docs/`.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "documentation",
    responses(
        (status = 303, description = "To `/docs/`",
            headers(("Location" = String, description = "`/docs/`"))),
    )
)]
#[allow(dead_code)]
fn docs_redirect() {}

/// `GET /docs/`: Swagger UI.
#[utoipa::path(
    get,
    path = "/docs/",
    tag = "documentation",
    responses(
        (status = 200, description = "Swagger UI's page", content_type = "text/html",
            body = String),
    )
)]
#[allow(dead_code)]
fn docs_page() {}

/// `GET /docs/{file}`: Swagger UI's scripts, styles and images.
#[utoipa::path(
    get,
    path = "/docs/{file}",
    tag = "documentation",
    params(("file" = String, Path, description = "A file of Swagger UI",
        example = "swagger-ui.css")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/html"),
            (String = "text/css"),
            (String = "text/javascript"),
            (String = "image/png"),
            (String = "text/plain"),
        )),
        (status = 404, response = NotFound),
    )
)]
#[allow(dead_code)]
fn docs_file() {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::collections::{BTreeMap, BTreeSet};

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt as _;

    use crate::{Server, ServerConfig};

    /// The methods a route may have; HEAD and OPTIONS come with GET and CORS.
    const METHODS: [Method; 5] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];

    /// The service's real router, on a fresh data dir.
    async fn router() -> (axum::Router, tempfile::TempDir) {
        let scratch = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: scratch.path().join("data"),
            ..ServerConfig::default()
        };
        let server = Server::bind(config).await.unwrap();
        (server.router.clone(), scratch)
    }

    /// A path with each parameter written `{}`, so that the router's `{*rest}` and the
    /// document's `{file}` compare equal.
    fn unnamed(path: &str) -> String {
        path.split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "{}"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The paths the router matches, parameters unnamed. Axum has no API that lists
    /// routes; its `Debug` output of the path router holds them as `RouteId(N): "/path"`.
    /// Should that output change, this finds no paths and the test fails rather than
    /// passes.
    fn router_paths(router: &axum::Router) -> BTreeSet<String> {
        let debug = format!("{router:?}");
        // Only the main path router: the fallback router's catch-all is no route.
        let main = debug.split("fallback_router").next().unwrap();
        let mut paths = BTreeSet::new();
        for piece in main.split("RouteId(").skip(1) {
            let Some((_, after)) = piece.split_once("): \"") else {
                continue;
            };
            let path = after.split('"').next().unwrap();
            paths.insert(unnamed(path));
        }
        paths
    }

    /// The methods `path` answers, found by asking: a method the route lacks gets 405
    /// from the router's fallback, and no handler answers 405 itself. The requests
    /// carry no body and no credential, so none changes anything.
    async fn routed_methods(router: &axum::Router, path: &str) -> BTreeSet<String> {
        let concrete = path.replace("{}", "probe");
        let mut methods = BTreeSet::new();
        for method in METHODS {
            let request = Request::builder()
                .method(method.clone())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            if response.status() != StatusCode::METHOD_NOT_ALLOWED {
                methods.insert(method.as_str().to_ascii_lowercase());
            }
        }
        methods
    }

    async fn served_document(router: &axum::Router) -> Value {
        let request = Request::get(super::DOCUMENT_PATH)
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()[axum::http::header::CONTENT_TYPE].clone();
        assert_eq!(content_type, "application/json");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn documented_operations(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
        let paths = document["paths"].as_object().unwrap();
        paths
            .iter()
            .map(|(path, item)| {
                let methods = item
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|key| {
                        [
                            "get", "put", "post", "delete", "options", "head", "patch", "trace",
                        ]
                        .contains(&key.as_str())
                    })
                    .cloned()
                    .collect();
                (unnamed(path), methods)
            })
            .collect()
    }

    #[tokio::test]
    async fn every_route_of_the_router_is_documented_and_nothing_else() {
        let (router, _scratch) = router().await;
        let document = served_document(&router).await;

        let mut routed = BTreeMap::new();
        for path in router_paths(&router) {
            let methods = routed_methods(&router, &path).await;
            routed.insert(path, methods);
        }
        let documented = documented_operations(&document);

        assert!(routed.len() > 20, "too few routes found: {routed:?}");
        assert_eq!(routed, documented);
    }

    /// Every `$ref` in `value`.
    fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(target)) => found.push(target),
                        _ => references(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| references(item, found)),
            _ => {}
        }
    }

    #[tokio::test]
    async fn the_document_is_well_formed_openapi_3_1() {
        let (router, _scratch) = router().await;
        let document = served_document(&router).await;

        assert!(document["openapi"].as_str().unwrap().starts_with("3.1."));
        assert!(document["info"]["title"].is_string());
        assert!(document["info"]["version"].is_string());

        // Every reference resolves within the document.
        let mut targets = Vec::new();
        references(&document, &mut targets);
        assert!(!targets.is_empty());
        for target in targets {
            let pointer = target.strip_prefix('#').unwrap();
            assert!(
                document.pointer(pointer).is_some(),
                "{target} does not resolve"
            );
        }

        let schemes = document["components"]["securitySchemes"]
            .as_object()
            .unwrap();
        let mut operation_ids = BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            assert!(path.starts_with('/'), "{path}");
            for (method, operation) in item.as_object().unwrap() {
                // Unique operation ids: generated clients name methods by them.
                let id = operation["operationId"].as_str().unwrap();
                assert!(operation_ids.insert(id.to_owned()), "{id} is used twice");

                let responses = operation["responses"].as_object().unwrap();
                assert!(!responses.is_empty(), "{method} {path} has no responses");
                for status in responses.keys() {
                    let code: u16 = status.parse().unwrap();
                    assert!((100..600).contains(&code), "{method} {path}: {status}");
                }

                // Each path parameter is declared, as OpenAPI requires.
                let parameters = operation["parameters"].as_array().cloned();
                let declared: BTreeSet<String> = parameters
                    .unwrap_or_default()
                    .iter()
                    .filter(|parameter| parameter["in"] == "path")
                    .inspect(|parameter| assert_eq!(parameter["required"], true))
                    .map(|parameter| parameter["name"].as_str().unwrap().to_owned())
                    .collect();
                let templated: BTreeSet<String> = path
                    .split('/')
                    .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
                    .map(str::to_owned)
                    .collect();
                assert_eq!(declared, templated, "{method} {path}");

                // Security names only defined schemes.
                let requirements = operation["security"].as_array().cloned();
                for requirement in requirements.unwrap_or_default() {
                    for scheme in requirement.as_object().unwrap().keys() {
                        assert!(schemes.contains_key(scheme), "{method} {path}: {scheme}");
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn the_documented_username_pattern_refuses_what_sign_up_refuses() {
        let (router, _scratch) = router().await;
        let document = served_document(&router).await;
        let pattern = document
            .pointer("/components/schemas/SignUpRequest/properties/username/pattern")
            .and_then(Value::as_str)
            .unwrap();

        // `^[^R]*[^\\sR][^R]*$`: R is the refused class.
        let refused = pattern
            .strip_prefix("^[^")
            .and_then(|rest| rest.split(']').next())
            .unwrap();
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        let mut open: Option<u32> = None;
        for item in refused.split("\\u").skip(1) {
            let code = u32::from_str_radix(&item[..4], 16).unwrap();
            match open.take() {
                Some(start) => ranges.push((start, code)),
                None if item.ends_with('-') => open = Some(code),
                None => ranges.push((code, code)),
            }
        }
        assert!(open.is_none() && ranges.len() > 10, "{refused}");

        // Every character alone as a username: accepted exactly when the pattern
        // matches it.
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let in_refused = ranges
                .iter()
                .any(|&(start, end)| (start..=end).contains(&u32::from(c)));
            let matches = !in_refused && !c.is_whitespace();
            let accepted = crate::sessions::normalize_username(&c.to_string()).is_ok();
            assert_eq!(accepted, matches, "U+{:04X}", u32::from(c));
        }
    }

    #[tokio::test]
    async fn swagger_ui_is_served_from_the_binary() {
        let (router, _scratch) = router().await;

        let page = Request::get("/docs/").body(Body::empty()).unwrap();
        let page = router.clone().oneshot(page).await.unwrap();
        let script = Request::get("/docs/swagger-initializer.js")
            .body(Body::empty())
            .unwrap();
        let script = router.clone().oneshot(script).await.unwrap();

        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(script.status(), StatusCode::OK);
        let script = axum::body::to_bytes(script.into_body(), usize::MAX)
            .await
            .unwrap();
        let script = String::from_utf8(script.to_vec()).unwrap();
        assert!(script.contains("\"url\": \"/openapi.json\""), "{script}");
        // No spec is sent to an online validator.
        assert!(script.contains("\"validatorUrl\": \"none\""), "{script}");
    }
}
