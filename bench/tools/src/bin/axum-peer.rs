//! The hand-written peer of bench/run: the smallest honest axum service that checks a
//! Tessera access token with jsonwebtoken, as a team without Tessera's guard would write
//! it. It reads the issuer's JWKS once at start from a file the script writes, and
//! answers `GET /auth/verify` as Tessera's forward-auth route does (200 with
//! `X-Tessera-User`, or 401 with the RFC 6750 challenge) and `GET /healthz`.
//!
//! ```text
//! axum-peer LISTEN JWKS_FILE ISSUER AUDIENCE
//! ```

use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Tessera's allowance for clock skew, so both sides accept the same tokens.
const LEEWAY_SECS: u64 = 10;

/// The one claim the route answers with; jsonwebtoken checks the registered ones.
#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// The issuer's keys by `kid`, and the rules every token must pass.
struct Verifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl Verifier {
    fn new(jwks: &JwkSet, issuer: &str, audience: &str) -> Result<Self, Box<dyn Error>> {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            if let Some(kid) = &jwk.common.key_id {
                keys.insert(kid.clone(), DecodingKey::from_jwk(jwk)?);
            }
        }
        // The algorithm is pinned here, not taken from the token's header.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        Ok(Self { keys, validation })
    }

    /// The caller's `sub`, or `None` for a missing or invalid token.
    fn check(&self, headers: &HeaderMap) -> Option<String> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = value.strip_prefix("Bearer ")?;
        let jose = jsonwebtoken::decode_header(token).ok()?;
        // RFC 9068 §4: an access token says so in `typ`.
        if !matches!(jose.typ.as_deref(), Some("at+jwt" | "application/at+jwt")) {
            return None;
        }
        let key = self.keys.get(jose.kid.as_deref()?)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation).ok()?;
        Some(data.claims.sub)
    }
}

async fn verify(State(verifier): State<Arc<Verifier>>, headers: HeaderMap) -> Response {
    let Some(sub) = verifier.check(&headers) else {
        let challenge = HeaderValue::from_static(r#"Bearer error="invalid_token""#);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, challenge)],
        )
            .into_response();
    };
    let mut response = StatusCode::OK.into_response();
    if let Ok(user) = HeaderValue::from_str(&sub) {
        response.headers_mut().insert("x-tessera-user", user);
    }
    response
}

async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, jwks_file, issuer, audience] = args.as_slice() else {
        return Err("usage: axum-peer LISTEN JWKS_FILE ISSUER AUDIENCE".into());
    };
    let jwks: JwkSet = serde_json::from_slice(&std::fs::read(jwks_file)?)?;
    let verifier = Arc::new(Verifier::new(&jwks, issuer, audience)?);
    let app = Router::new()
        .route("/auth/verify", get(verify))
        .route("/healthz", get(healthz))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind(listen.as_str()).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
