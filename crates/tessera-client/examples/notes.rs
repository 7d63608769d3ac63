//! Logs in to a Tessera server, then calls its notes API with the access
//! token attached and renewed by the session: the SDK's whole loop in one
//! file. Run a server first (`tessera server`), sign up a user, then:
//!
//! ```sh
//! TESSERA_SERVER=http://127.0.0.1:8080 TESSERA_USERNAME=alice \
//!   TESSERA_PASSWORD='correct horse battery' \
//!   cargo run -p tessera-client --example notes
//! ```

use std::sync::Arc;

use serde_json::json;
use tessera_client::{MemoryStore, Method, ServerUrl, Session};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let setting = |name: &str| std::env::var(name).map_err(|_| format!("set {name}"));
    let server = ServerUrl::parse(&setting("TESSERA_SERVER")?)?;
    let username = setting("TESSERA_USERNAME")?;
    let password = setting("TESSERA_PASSWORD")?;

    // Memory only: nothing is written to disk by this example.
    let session = Arc::new(Session::new(server, Arc::new(MemoryStore::new()))?);
    session.login(&username, &password).await?;

    // Every request carries the access token; it is renewed before it
    // expires, and once more if the server answers 401 invalid_token.
    let note = json!({"title": "from the SDK", "body": "hello"});
    let created: serde_json::Value = session
        .request_json(Method::POST, "/api/notes", Some(&note))
        .await?;
    println!("created: {created}");

    // Tasks sharing the session share one renewal too.
    let listings: Vec<_> = (0..3)
        .map(|_| {
            let session = Arc::clone(&session);
            tokio::spawn(async move {
                session
                    .request_json::<serde_json::Value>(Method::GET, "/api/notes", None)
                    .await
            })
        })
        .collect();
    for listing in listings {
        println!("notes: {}", listing.await??);
    }

    session.logout().await?;
    Ok(())
}
