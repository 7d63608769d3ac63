//! Where signing keys are kept, behind one trait so that the key ring neither knows nor
//! cares: [`FolderKeys`], owner-only files in the data dir (one instance, the default),
//! or [`DatabaseKeys`], rows of the database sealed under the master key (several
//! instances sharing one database). Both answer with [`KeyRecord`]s; the key ring decides
//! which key signs and which are published.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use tessera_token::{KeyAlgorithm, SigningKey};

use crate::keystore::{self, KeyRecord};
use crate::master_key::MasterKey;
use crate::store::{Store, StoredKey};

/// A place that keeps signing keys.
#[async_trait]
pub(crate) trait KeyStore: Send + Sync + std::fmt::Debug {
    /// Every key, oldest activation first.
    async fn load_all(&self) -> anyhow::Result<Vec<KeyRecord>>;

    /// Generates and keeps a key of `algorithm`, published at once and signing from
    /// `activates_at`. With `unless_created_since`, nothing is added when a key was
    /// created at or after that time, checked atomically against other instances, so
    /// that a scheduled rotation happens once however many instances find it due;
    /// `None` then means another instance rotated first.
    async fn add(
        &self,
        algorithm: KeyAlgorithm,
        now: i64,
        activates_at: i64,
        unless_created_since: Option<i64>,
    ) -> anyhow::Result<Option<KeyRecord>>;

    /// Deletes a key whose tokens have all expired; deleting it twice is no error.
    async fn remove(&self, kid: &str) -> anyhow::Result<()>;
}

/// Keys as files in a folder of the data dir (see [`crate::keystore`]). The data dir's
/// lock keeps other servers out, so checking and adding need no further lock.
#[derive(Debug, Clone)]
pub(crate) struct FolderKeys {
    dir: PathBuf,
}

impl FolderKeys {
    /// The keys in `dir`, created owner-only when first needed.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Runs blocking file work off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(PathBuf) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || work(dir))
            .await
            .context("key folder task failed")?
    }
}

#[async_trait]
impl KeyStore for FolderKeys {
    async fn load_all(&self) -> anyhow::Result<Vec<KeyRecord>> {
        self.blocking(|dir| keystore::load_all(&dir)).await
    }

    async fn add(
        &self,
        algorithm: KeyAlgorithm,
        now: i64,
        activates_at: i64,
        unless_created_since: Option<i64>,
    ) -> anyhow::Result<Option<KeyRecord>> {
        self.blocking(move |dir| {
            if let Some(since) = unless_created_since {
                let records = keystore::load_all(&dir)?;
                if records.iter().any(|record| record.created_at >= since) {
                    return Ok(None);
                }
            }
            keystore::create(&dir, algorithm, now, activates_at).map(Some)
        })
        .await
    }

    async fn remove(&self, kid: &str) -> anyhow::Result<()> {
        let kid = kid.to_owned();
        self.blocking(move |dir| keystore::remove(&dir, &kid)).await
    }
}

/// Keys as rows of the database, each private key sealed under the master key: what
/// lets several instances sign with the same keys and see one another's rotations.
#[derive(Clone)]
pub(crate) struct DatabaseKeys {
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
}

impl std::fmt::Debug for DatabaseKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseKeys").finish_non_exhaustive()
    }
}

impl DatabaseKeys {
    /// The keys kept in `store`, sealed under `master`.
    pub(crate) fn new(store: Arc<dyn Store>, master: Arc<MasterKey>) -> Self {
        Self { store, master }
    }

    /// Copies the keys of a key folder into an empty database, so that a server moved
    /// from files to the database keeps signing with, and trusting, the same keys.
    /// Returns how many were copied; none when the database already holds keys.
    pub(crate) async fn import_if_empty(&self, folder: &FolderKeys) -> anyhow::Result<usize> {
        if !self.store.signing_keys().await?.is_empty() || !folder.dir.exists() {
            return Ok(0);
        }
        let records = folder.load_all().await?;
        for record in &records {
            self.store
                .add_signing_key(&self.seal(record)?, None)
                .await?;
        }
        Ok(records.len())
    }

    fn seal(&self, record: &KeyRecord) -> anyhow::Result<StoredKey> {
        let pem = record
            .key
            .to_pkcs8_pem()
            .context("only asymmetric keys are kept in the database")?;
        let alg = record.key.algorithm().to_string();
        let sealed = self.master.seal(record.key.kid(), &alg, pem.as_bytes())?;
        Ok(StoredKey {
            kid: record.key.kid().to_owned(),
            alg,
            sealed,
            created_at: record.created_at,
            activates_at: record.activates_at,
        })
    }

    fn open(&self, row: &StoredKey) -> anyhow::Result<KeyRecord> {
        let pem = self.master.open(&row.kid, &row.alg, &row.sealed)?;
        let text = std::str::from_utf8(&pem).context("a sealed key is not PEM text")?;
        let key = SigningKey::from_pkcs8_pem(text)
            .with_context(|| format!("the sealed key {} is not a valid key", row.kid))?;
        // The sealing binds the row's kid and algorithm; the key must match them too.
        if key.kid() != row.kid || key.algorithm().to_string() != row.alg {
            anyhow::bail!("the sealed key {} does not match its row", row.kid);
        }
        Ok(KeyRecord {
            key,
            created_at: row.created_at,
            activates_at: row.activates_at,
        })
    }
}

#[async_trait]
impl KeyStore for DatabaseKeys {
    async fn load_all(&self) -> anyhow::Result<Vec<KeyRecord>> {
        let rows = self.store.signing_keys().await?;
        let mut records = rows
            .iter()
            .map(|row| self.open(row))
            .collect::<anyhow::Result<Vec<_>>>()?;
        records.sort_by_key(|record| (record.activates_at, record.created_at));
        Ok(records)
    }

    async fn add(
        &self,
        algorithm: KeyAlgorithm,
        now: i64,
        activates_at: i64,
        unless_created_since: Option<i64>,
    ) -> anyhow::Result<Option<KeyRecord>> {
        let key = SigningKey::generate(algorithm)
            .with_context(|| format!("cannot generate an {algorithm} key"))?;
        let record = KeyRecord {
            key,
            created_at: now,
            activates_at,
        };
        let added = self
            .store
            .add_signing_key(&self.seal(&record)?, unless_created_since)
            .await?;
        Ok(added.then_some(record))
    }

    async fn remove(&self, kid: &str) -> anyhow::Result<()> {
        self.store.remove_signing_key(kid).await?;
        Ok(())
    }
}
