//! Key administration for `tessera keys`: list the keys with their state, and rotate.
//! Works on the key store directly (the data dir's folder, or the database with the
//! master key); a running server, or every instance sharing the database, picks the
//! change up within seconds.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tessera_token::KeyAlgorithm;

use crate::config::ServerConfig;
use crate::key_ring::plan;
use crate::key_store::{FolderKeys, KeyStore};

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, signing from its activation time.
    Upcoming,
    /// Signing new tokens.
    Signing,
    /// Replaced; published until `until` so that its tokens still validate.
    Retiring {
        /// Seconds since the epoch after which the key is removed.
        until: i64,
    },
    /// Every token it signed has expired; removed at the server's next check.
    Expired,
}

/// One key of the data dir.
#[derive(Debug, Clone)]
pub struct KeyStatus {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: KeyAlgorithm,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// When it signs (or signed) from.
    pub activates_at: i64,
    /// Its state at the time asked.
    pub state: KeyState,
}

/// The key store `config` names: the database's keys when a master key is configured,
/// else the data dir's folder. `None` when there is no data dir yet.
async fn key_store(config: &ServerConfig) -> anyhow::Result<Option<Arc<dyn KeyStore>>> {
    if config.master_key_file.is_none() && config.database_url.is_none() {
        let dir = config.data_dir.join(crate::KEYS_DIR);
        return Ok(dir
            .exists()
            .then(|| Arc::new(FolderKeys::new(dir)) as Arc<dyn KeyStore>));
    }
    if config.database_url.is_none() && !config.data_dir.exists() {
        return Ok(None);
    }
    let store = crate::store::open(
        config.database_url.as_ref(),
        &config.data_dir.join(crate::DATABASE_FILE),
    )
    .await?;
    crate::key_store_for(config, &config.data_dir, store)
        .await
        .map(Some)
}

/// The keys `config` names and their state at `now`.
pub async fn list(config: &ServerConfig, now: i64) -> anyhow::Result<Vec<KeyStatus>> {
    let Some(store) = key_store(config).await? else {
        return Ok(Vec::new());
    };
    let records = store.load_all().await?;
    let retain = retain_secs(config);
    let keys_plan = plan(&records, now, retain, None);
    let statuses = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let state = if keys_plan.signer == Some(index) {
                KeyState::Signing
            } else if record.activates_at > now {
                KeyState::Upcoming
            } else if keys_plan.expired.contains(&index) {
                KeyState::Expired
            } else {
                let stopped = records
                    .get(index + 1)
                    .map_or(record.activates_at, |next| next.activates_at);
                KeyState::Retiring {
                    until: stopped.saturating_add(retain),
                }
            };
            KeyStatus {
                kid: record.key.kid().to_owned(),
                alg: record.key.algorithm(),
                created_at: record.created_at,
                activates_at: record.activates_at,
                state,
            }
        })
        .collect();
    Ok(statuses)
}

/// Adds a key of the algorithm signing now, published at once and signing after
/// `delay` (the configured activation delay when `None`). Rotation never changes the
/// algorithm: that takes a restart with another `alg`, so that the server, its
/// discovery document and its keys agree.
pub async fn rotate(
    config: &ServerConfig,
    delay: Option<Duration>,
    now: i64,
) -> anyhow::Result<KeyStatus> {
    if !config.alg.is_asymmetric() {
        bail!(
            "the server signs with HS256: rotate by changing the secret in \
             hmac_secret_file and restarting"
        );
    }
    let store = match key_store(config).await? {
        Some(store) => store,
        None => Arc::new(FolderKeys::new(config.data_dir.join(crate::KEYS_DIR))),
    };
    let records = store.load_all().await?;
    let signing_algorithm = plan(&records, now, retain_secs(config), None)
        .signer
        .and_then(|index| records.get(index))
        .map_or(config.alg, |record| record.key.algorithm());
    let delay = delay.unwrap_or(config.key_activation_delay);
    let activates_at = now.saturating_add(i64::try_from(delay.as_secs()).unwrap_or(0));
    let record = store
        .add(signing_algorithm, now, activates_at, None)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the key store refused the new key"))?;
    Ok(KeyStatus {
        kid: record.key.kid().to_owned(),
        alg: record.key.algorithm(),
        created_at: now,
        activates_at,
        state: if delay.is_zero() {
            KeyState::Signing
        } else {
            KeyState::Upcoming
        },
    })
}

/// How long a replaced key stays published: its last token's lifetime plus leeway.
// Limitation: this uses the lifetime configured now, not the one its tokens were issued
// under; recording the longest lifetime each key signed with, in its metadata, would
// remove the gap after `access_ttl` is lowered.
pub(crate) fn retain_secs(config: &ServerConfig) -> i64 {
    let ttl = i64::try_from(config.access_ttl.as_secs()).unwrap_or(i64::MAX);
    let leeway = i64::try_from(config.leeway.as_secs()).unwrap_or(0);
    ttl.saturating_add(leeway)
}
