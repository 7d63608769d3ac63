//! Password hashing: Argon2id with OWASP's parameters, computed on the blocking pool and
//! never more at once than there are cores, so a login flood queues here instead of
//! starving the async workers that check tokens.

use std::sync::Arc;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tessera_token::Secret;
use tokio::sync::Semaphore;

/// OWASP Password Storage Cheat Sheet, Argon2id: 19 MiB of memory, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Verified instead of a real hash when the username is unknown, so that an unknown
/// user costs the same time as a wrong password. Its digest is random bytes, not the
/// hash of any password, so nothing verifies against it.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$\
    c2FsdHNhbHRzYWx0c2FsdA$ZbE3bJ6VKeMZbRvb8cY0oCFcMdFDc5rXdk4U7bDuU6Y";

/// Hashes and verifies passwords, a bounded number at a time.
#[derive(Debug, Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Passwords {
    /// At most `parallel` hashes run at once.
    pub fn new(parallel: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(parallel.max(1))),
        }
    }

    /// The PHC string of a fresh Argon2id hash of `password`.
    pub async fn hash(&self, password: Secret<String>) -> anyhow::Result<String> {
        self.run(move || {
            argon2()?
                .hash_password(password.expose().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))
        })
        .await
    }

    /// Whether `password` matches `hash`; with no hash, a dummy is verified so that
    /// the answer takes as long as for a real user.
    pub async fn verify(
        &self,
        password: Secret<String>,
        hash: Option<String>,
    ) -> anyhow::Result<bool> {
        self.run(move || {
            let hash = hash.as_deref().unwrap_or(DUMMY_HASH);
            let matches = argon2()?
                .verify_password(password.expose().as_bytes(), hash)
                .is_ok();
            Ok(matches)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("password pool closed")?;
        tokio::task::spawn_blocking(work)
            .await
            .context("password task failed")?
    }
}

fn argon2() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|error| anyhow::anyhow!("argon2 parameters: {error}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret<String> {
        Secret::new(text.to_owned())
    }

    #[tokio::test]
    async fn a_hash_verifies_its_own_password_only() {
        let passwords = Passwords::new(2);

        let hash = passwords.hash(secret("correct horse")).await.unwrap();

        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            passwords
                .verify(secret("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify(secret("wrong horse"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_dummy_hash_uses_the_same_parameters_and_matches_nothing() {
        let passwords = Passwords::new(1);
        let fresh = passwords.hash(secret("anything")).await.unwrap();
        let params = |hash: &str| hash.split('$').nth(3).map(str::to_owned);

        assert_eq!(params(DUMMY_HASH), params(&fresh));
        assert!(!passwords.verify(secret("password"), None).await.unwrap());
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
