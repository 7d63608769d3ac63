//! A resource server protected by Tessera: `/hello` needs a valid access token and
//! `/admin` the role `admin`. Keys come from the issuer named by `TESSERA_ISSUER`
//! (discovery, then its JWKS, refreshed in the background). With `TESSERA_FEED_CREDENTIAL`
//! (the issuer's introspection credential) it also follows the issuer's feed of ended
//! sessions, refusing a logged-out session's tokens at once.
//!
//! ```text
//! TESSERA_ISSUER=http://127.0.0.1:8080 cargo run -p tessera-guard --example protected_service
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/hello
//! ```

use axum::Router;
use axum::routing::get;
use tessera_guard::{Guard, Identity, InsufficientScope, RemoteKeys, RevocationFeed};
use tessera_token::{KeySet, Validator, ValidatorConfig};

async fn hello(Identity(claims): Identity) -> String {
    format!("hello, {}\n", claims.sub)
}

async fn admin(identity: Identity) -> Result<&'static str, InsufficientScope> {
    identity.require_role("admin")?;
    Ok("welcome, administrator\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let issuer = std::env::var("TESSERA_ISSUER")
        .map_err(|_| "set TESSERA_ISSUER to the issuer URL, e.g. http://127.0.0.1:8080")?;

    // No keys yet: the first fetch installs them, and until then every token is refused.
    let config = ValidatorConfig::new(&issuer, "tessera");
    let guard = Guard::new(Validator::new(KeySet::default(), config)?);
    let remote_keys = RemoteKeys::discover(&issuer)?;
    if let Err(error) = remote_keys.refresh(&guard).await {
        eprintln!("issuer keys not available yet ({error}); retrying in the background");
    }
    let _refresher = remote_keys.spawn(guard.clone());
    let _feed = match std::env::var("TESSERA_FEED_CREDENTIAL") {
        Ok(credential) => Some(RevocationFeed::new(&issuer, credential)?.spawn(guard.clone())),
        Err(_) => None,
    };

    let app = Router::new()
        .route("/hello", get(hello))
        .route("/admin", get(admin))
        .with_state(guard);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
