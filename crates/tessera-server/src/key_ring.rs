//! Which key signs and which keys are trusted, over time. A rotation adds a key that is
//! published (in the JWKS and to the guard) at once but signs only after a delay, so that
//! caches of remote verifiers learn it first; the key it replaces stays published until
//! every token it signed has expired, then it is removed. A background task re-reads the
//! key store (the folder, or the database several instances share), so `tessera keys
//! rotate`, or a rotation by another instance, takes effect without a restart.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tessera_guard::Guard;
use tessera_token::{JwkSet, KeyAlgorithm, KeySet, SigningKey, TokenIssuer};

use crate::key_store::KeyStore;
use crate::keystore::KeyRecord;

/// How the keys of one server are chosen and kept.
#[derive(Debug, Clone)]
pub(crate) struct KeyPolicy {
    /// The algorithm new keys use.
    pub(crate) algorithm: KeyAlgorithm,
    /// The HS256 key, when the server signs with a shared secret.
    pub(crate) hmac: Option<SigningKey>,
    /// How long after it stops signing a key stays trusted: the longest access-token
    /// lifetime plus the leeway.
    pub(crate) retain_secs: i64,
    /// Start a scheduled rotation when the newest key is this old.
    pub(crate) rotate_every: Option<Duration>,
    /// How long a new key is published before it signs.
    pub(crate) activation_delay: Duration,
    /// When the HS256 secret took over signing from the folder's keys (start-up).
    pub(crate) hmac_since: Option<i64>,
}

/// What the keys mean at one moment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyPlan {
    /// Index of the signing key, if any key has activated.
    pub(crate) signer: Option<usize>,
    /// Keys to trust and publish.
    pub(crate) published: Vec<usize>,
    /// Keys whose every token has expired.
    pub(crate) expired: Vec<usize>,
}

/// Splits `records` (sorted by activation) into signer, published and expired at `now`.
/// `superseded_at` is when something outside the folder (an HS256 secret) took over
/// signing: from then on no folder key signs, and the last one retires like any other.
pub(crate) fn plan(
    records: &[KeyRecord],
    now: i64,
    retain_secs: i64,
    superseded_at: Option<i64>,
) -> KeyPlan {
    let latest_active = records
        .iter()
        .rposition(|record| record.activates_at <= now);
    let mut published = Vec::new();
    let mut expired = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let stopped_at = if record.activates_at > now {
            None
        } else if Some(index) == latest_active {
            superseded_at
        } else {
            // It stopped signing when the next key activated.
            records.get(index + 1).map(|next| next.activates_at)
        };
        match stopped_at {
            Some(stopped) if stopped.saturating_add(retain_secs) <= now => expired.push(index),
            _ => published.push(index),
        }
    }
    KeyPlan {
        signer: latest_active.filter(|_| superseded_at.is_none()),
        published,
        expired,
    }
}

/// The signing and trusted keys in force now.
struct Active {
    issuer: Arc<TokenIssuer>,
    jwks: Arc<JwkSet>,
    /// When the signing key was made (for HS256: when the secret took over), seconds
    /// since the epoch; its age is a metric, so that a stalled rotation shows.
    signer_created_at: i64,
}

/// A server's keys: the signer, the published set, and the guard kept in step.
pub(crate) struct KeyRing {
    store: Arc<dyn KeyStore>,
    policy: KeyPolicy,
    issuer_url: String,
    audience: String,
    guard: Guard,
    active: ArcSwap<Active>,
    /// Held across one refresh, so two never interleave.
    refreshing: tokio::sync::Mutex<()>,
}

impl KeyRing {
    /// Loads the keys, creating a first key (or one of a newly configured algorithm,
    /// signing at once) when nothing could sign.
    pub(crate) async fn open(
        store: Arc<dyn KeyStore>,
        policy: KeyPolicy,
        issuer_url: &str,
        audience: &str,
        guard_for: impl FnOnce(KeySet) -> anyhow::Result<Guard>,
        now: i64,
    ) -> anyhow::Result<Self> {
        let mut records = store.load_all().await?;
        let plan_now = plan(&records, now, policy.retain_secs, policy.hmac_since);
        let signer_algorithm = plan_now
            .signer
            .and_then(|index| records.get(index))
            .map(|record| record.key.algorithm());
        if policy.algorithm.is_asymmetric() && signer_algorithm != Some(policy.algorithm) {
            if signer_algorithm.is_some() {
                tracing::warn!(
                    algorithm = %policy.algorithm,
                    "the configured algorithm differs from the signing key's; a new key \
                     signs at once, and remote verifiers that cached the key set may \
                     refuse its tokens until they refetch it"
                );
            }
            // Instances starting together on an empty database each look for a key:
            // only the first adds one, the others load it.
            store.add(policy.algorithm, now, now, Some(now)).await?;
            records = store.load_all().await?;
        }
        let (active, trusted) = Self::assemble(&records, &policy, issuer_url, audience, now)?;
        let guard = guard_for(trusted)?;
        Ok(Self {
            store,
            policy,
            issuer_url: issuer_url.to_owned(),
            audience: audience.to_owned(),
            guard,
            active: ArcSwap::from_pointee(active),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// The guard that trusts exactly the published keys.
    pub(crate) fn guard(&self) -> Guard {
        self.guard.clone()
    }

    /// The issuer signing with the current key.
    pub(crate) fn issuer(&self) -> Arc<TokenIssuer> {
        Arc::clone(&self.active.load().issuer)
    }

    /// The JWKS document of the published keys.
    pub(crate) fn jwks(&self) -> Arc<JwkSet> {
        Arc::clone(&self.active.load().jwks)
    }

    /// When the signing key was made, seconds since the epoch.
    pub(crate) fn signer_created_at(&self) -> i64 {
        self.active.load().signer_created_at
    }

    /// Re-reads the keys, starts a scheduled rotation when one is due, removes expired
    /// keys, and swaps in the keys in force at `now`.
    pub(crate) async fn refresh(&self, now: i64) -> anyhow::Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        let mut records = self.store.load_all().await?;
        if let Some(newest_before) = self.rotation_due(&records, now) {
            let delay = i64::try_from(self.policy.activation_delay.as_secs()).unwrap_or(0);
            let added = self
                .store
                .add(
                    self.policy.algorithm,
                    now,
                    now.saturating_add(delay),
                    Some(newest_before),
                )
                .await?;
            if let Some(record) = added {
                tracing::info!(kid = record.key.kid(), "scheduled key rotation");
            }
            records = self.store.load_all().await?;
        }
        let plan_now = plan(
            &records,
            now,
            self.policy.retain_secs,
            self.policy.hmac_since,
        );
        if !plan_now.expired.is_empty() {
            for index in &plan_now.expired {
                if let Some(record) = records.get(*index) {
                    self.store.remove(record.key.kid()).await?;
                    tracing::info!(kid = record.key.kid(), "expired key removed");
                }
            }
            records = self.store.load_all().await?;
        }
        let (active, trusted) = Self::assemble(
            &records,
            &self.policy,
            &self.issuer_url,
            &self.audience,
            now,
        )?;
        let changed =
            active.issuer.key().kid() != self.issuer().key().kid() || *active.jwks != *self.jwks();
        if changed {
            tracing::info!(signing_kid = active.issuer.key().kid(), "keys updated");
            self.guard.replace_keys(trusted);
            self.active.store(Arc::new(active));
        }
        Ok(())
    }

    /// Whether a scheduled rotation is due (the newest key is a whole interval old).
    /// When it is, returns the time from which a key counts as recent, so that the
    /// rotation is skipped if another instance added one meanwhile.
    fn rotation_due(&self, records: &[KeyRecord], now: i64) -> Option<i64> {
        let every = self.policy.rotate_every?;
        if !self.policy.algorithm.is_asymmetric() {
            return None;
        }
        let every = i64::try_from(every.as_secs()).unwrap_or(i64::MAX);
        let recent_since = now.saturating_sub(every);
        let newest = records.iter().map(|record| record.created_at).max()?;
        (newest <= recent_since).then_some(recent_since.saturating_add(1))
    }

    fn assemble(
        records: &[KeyRecord],
        policy: &KeyPolicy,
        issuer_url: &str,
        audience: &str,
        now: i64,
    ) -> anyhow::Result<(Active, KeySet)> {
        let plan_now = plan(records, now, policy.retain_secs, policy.hmac_since);
        let mut trusted: Vec<_> = plan_now
            .published
            .iter()
            .filter_map(|index| records.get(*index))
            .map(|record| record.key.verifying_key())
            .collect();
        let (signing_key, signer_created_at) = match &policy.hmac {
            Some(hmac) => {
                trusted.push(hmac.verifying_key());
                (hmac.clone(), policy.hmac_since.unwrap_or(now))
            }
            None => plan_now
                .signer
                .and_then(|index| records.get(index))
                .map(|record| (record.key.clone(), record.created_at))
                .context("no key can sign: every key in the key folder is scheduled for later")?,
        };
        let keys = KeySet::new(trusted);
        let active = Active {
            issuer: Arc::new(TokenIssuer::new(signing_key, issuer_url, audience)),
            jwks: Arc::new(keys.to_jwks()),
            signer_created_at,
        };
        Ok((active, keys))
    }
}

/// Runs [`KeyRing::refresh`] every `period` until the process ends. A failure is logged
/// and retried: the keys in force stay as they were.
pub(crate) async fn keep_fresh(ring: Arc<KeyRing>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        if let Err(error) = ring.refresh(crate::clock::now()).await {
            tracing::error!(error = format!("{error:#}"), "key refresh failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(activates_at: i64) -> KeyRecord {
        KeyRecord {
            key: SigningKey::generate(KeyAlgorithm::EdDSA).unwrap(),
            created_at: activates_at,
            activates_at,
        }
    }

    #[test]
    fn the_newest_active_key_signs_and_an_upcoming_key_is_published_already() {
        let records = vec![record(100), record(200)];

        let at_150 = plan(&records, 150, 50, None);

        assert_eq!(at_150.signer, Some(0));
        assert_eq!(at_150.published, vec![0, 1]);
        assert!(at_150.expired.is_empty());
    }

    #[test]
    fn a_replaced_key_stays_published_until_its_tokens_expire() {
        let records = vec![record(100), record(200)];

        let just_after = plan(&records, 249, 50, None);
        let long_after = plan(&records, 250, 50, None);

        assert_eq!(just_after.signer, Some(1));
        assert_eq!(just_after.published, vec![0, 1]);
        assert_eq!(long_after.published, vec![1]);
        assert_eq!(long_after.expired, vec![0]);
    }

    #[test]
    fn with_no_active_key_nothing_signs_and_nothing_expires() {
        let records = vec![record(500)];

        let early = plan(&records, 100, 50, None);

        assert_eq!(early.signer, None);
        assert_eq!(early.published, vec![0]);
    }

    #[test]
    fn keys_superseded_by_a_shared_secret_retire_and_then_expire() {
        let records = vec![record(100), record(200)];

        let while_retiring = plan(&records, 300, 50, Some(280));
        let after = plan(&records, 330, 50, Some(280));

        assert_eq!(while_retiring.signer, None);
        assert_eq!(while_retiring.published, vec![1]);
        assert_eq!(while_retiring.expired, vec![0]);
        assert!(after.published.is_empty());
        assert_eq!(after.expired, vec![0, 1]);
    }
}
