//! Client SDK for Tessera: logs a user in, keeps the tokens in a
//! [`TokenStore`], attaches the access token to each request and renews it
//! before it expires (steps 1, 3, 4 and 7 of the loop in the design).
//!
//! The smallest working use:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use tessera_client::{MemoryStore, Method, ServerUrl, Session};
//!
//! # async fn run() -> Result<(), tessera_client::Error> {
//! let server = ServerUrl::parse("http://127.0.0.1:8080")?;
//! let session = Session::new(server, Arc::new(MemoryStore::new()))?;
//! session.login("alice", "correct horse battery staple").await?;
//!
//! let notes: serde_json::Value = session
//!     .request_json(Method::GET, "/api/notes", None)
//!     .await?;
//! println!("{notes}");
//!
//! session.logout().await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod error;
mod server_url;
mod session;
mod store;

pub use error::{Error, StoreError};
pub use server_url::ServerUrl;
pub use session::{LogoutScope, Session};
#[cfg(feature = "keyring")]
pub use store::KeyringStore;
pub use store::{FileStore, MemoryStore, RenewalLock, StoredTokens, TokenStore};

/// The HTTP method type used by [`Session::send`], re-exported so callers
/// need no direct dependency on the HTTP client.
pub use reqwest::Method;
