//! Administration of a server's database (the SQLite file in its data dir, or PostgreSQL
//! at its `database_url`), for `tessera admin`: users (list, create, disable, enable,
//! roles), sessions (list, revoke) and the audit trail. It writes the database
//! directly; a running server sees ended sessions within a second (it follows the
//! sessions' `ended_at`), so disabling a user or revoking a session takes effect at once
//! without a restart.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use tessera_token::Secret;

use crate::clock;
use crate::config::ServerConfig;
use crate::passwords::Passwords;
use crate::store::{AuditEvent, SessionId, SessionRecord, Store, User, UserId};

/// A server's store, for administration.
pub struct Admin {
    store: Arc<dyn Store>,
}

impl Admin {
    /// Opens the database `config` names: PostgreSQL at `database_url`, else the SQLite
    /// file of `config.data_dir`, which must exist.
    pub async fn open(config: &ServerConfig) -> anyhow::Result<Self> {
        let path = config.data_dir.join(crate::DATABASE_FILE);
        if config.database_url.is_none() && !path.exists() {
            bail!(
                "no database in {}: start the server once, or pass its --data-dir \
                 (or its --database-url if it uses PostgreSQL)",
                config.data_dir.display()
            );
        }
        let store = crate::store::open(config.database_url.as_ref(), &path).await?;
        Ok(Self { store })
    }

    /// Every user.
    pub async fn users(&self) -> anyhow::Result<Vec<User>> {
        Ok(self.store.users().await?)
    }

    /// Creates a user with the same rules as sign-up.
    pub async fn create_user(
        &self,
        username: &str,
        password: Secret<String>,
    ) -> anyhow::Result<User> {
        let passwords = Passwords::new(1)?;
        let user =
            crate::sessions::create_user(self.store.as_ref(), &passwords, username, password)
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?;
        self.audit("user_created", Some(&user.id), Some(&user.username))
            .await;
        Ok(user)
    }

    /// The user named `username` (case-insensitive).
    pub async fn find(&self, username: &str) -> anyhow::Result<User> {
        let key = crate::sessions::username_key(username.trim());
        self.store
            .credentials(&key)
            .await?
            .map(|found| found.user)
            .with_context(|| format!("no user named {username}"))
    }

    /// Disables (ending every session) or enables a user.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> anyhow::Result<User> {
        let user = self.find(username).await?;
        self.store
            .set_disabled(&user.id, disabled, clock::now())
            .await?;
        let detail = if disabled {
            "user_disabled"
        } else {
            "user_enabled"
        };
        self.audit(detail, Some(&user.id), None).await;
        self.find(username).await
    }

    /// Replaces a user's roles; they reach tokens at the next login or renewal.
    pub async fn set_roles(&self, username: &str, roles: &[String]) -> anyhow::Result<User> {
        let user = self.find(username).await?;
        if roles
            .iter()
            .any(|role| role.is_empty() || role.contains(char::is_whitespace))
        {
            bail!("role names are single words");
        }
        self.store.set_roles(&user.id, roles).await?;
        self.audit("roles_changed", Some(&user.id), Some(&roles.join(" ")))
            .await;
        self.find(username).await
    }

    /// The open sessions of a user.
    pub async fn sessions(&self, username: &str) -> anyhow::Result<Vec<SessionRecord>> {
        let user = self.find(username).await?;
        Ok(self.store.open_sessions(&user.id, clock::now()).await?)
    }

    /// Ends a session by id; false when it was not open.
    pub async fn revoke_session(&self, id: &str) -> anyhow::Result<bool> {
        let session = SessionId(id.to_owned());
        let Some(owner) = self.store.session_owner(&session).await? else {
            return Ok(false);
        };
        let ended = self
            .store
            .end_session(&session, &owner, "admin_revoked", clock::now())
            .await?;
        if ended {
            self.audit("session_revoked", Some(&owner), Some(id)).await;
        }
        Ok(ended)
    }

    /// The newest audit events, newest first.
    pub async fn audit_events(&self, limit: u32) -> anyhow::Result<Vec<AuditEvent>> {
        Ok(self.store.audit_events(limit).await?)
    }

    async fn audit(&self, kind: &str, user: Option<&UserId>, detail: Option<&str>) {
        let event = AuditEvent {
            at: clock::now(),
            kind: kind.to_owned(),
            user_id: user.map(|user| user.0.clone()),
            detail: detail.map(|detail| format!("by admin command: {detail}")),
            ..AuditEvent::default()
        };
        if let Err(error) = self.store.record_audit(&event).await {
            tracing::warn!(%error, "cannot store audit event");
        }
    }
}
