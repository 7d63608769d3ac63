//! Ended sessions, in memory, so that every protected request can refuse the access
//! tokens of a logged-out, revoked or disabled session at once without reading the
//! database. The set is kept in step with the database: this process adds what it ends
//! at the moment it ends it, and background tasks add what others ended (the admin
//! command, another instance): PostgreSQL pushes each end as it commits, and every
//! second the sessions' `ended_at` column is read in case a push was lost.
//! An entry is dropped once every access token of its session has expired.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::store::{SessionId, Store};

/// How many ends a slow subscriber of the live feed may fall behind before it is cut
/// off (and reconnects from its last event).
const FEED_BUFFER: usize = 1024;

/// Sessions ended recently enough that some of their access tokens may still be live.
#[derive(Debug)]
pub(crate) struct Revocations {
    /// Session id to when it ended.
    ended: RwLock<HashMap<String, i64>>,
    /// Access-token lifetime plus leeway: after that long, a session's tokens are dead.
    horizon_secs: i64,
    /// Every newly known end, for the live feed to resource servers.
    feed: tokio::sync::broadcast::Sender<(String, i64)>,
}

impl Revocations {
    pub(crate) fn new(horizon_secs: i64) -> Self {
        Self {
            ended: RwLock::new(HashMap::new()),
            horizon_secs,
            feed: tokio::sync::broadcast::channel(FEED_BUFFER).0,
        }
    }

    /// The ends learnt from now on, as they are learnt.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<(String, i64)> {
        self.feed.subscribe()
    }

    /// Whether the session has ended.
    pub(crate) fn contains(&self, session: &str) -> bool {
        // A poisoned lock means a panic while writing; refusing is the safe answer.
        self.ended
            .read()
            .map_or(true, |ended| ended.contains_key(session))
    }

    /// Records sessions as ended at `ended_at`.
    pub(crate) fn insert<'a>(&self, sessions: impl IntoIterator<Item = (&'a SessionId, i64)>) {
        if let Ok(mut ended) = self.ended.write() {
            for (session, at) in sessions {
                if !ended.contains_key(&session.0) {
                    ended.insert(session.0.clone(), at);
                    // No subscriber is not an error: nobody follows the feed.
                    let _ = self.feed.send((session.0.clone(), at));
                }
            }
        }
    }

    /// Forgets sessions whose every token has expired by `now`.
    pub(crate) fn prune(&self, now: i64) {
        if let Ok(mut ended) = self.ended.write() {
            ended.retain(|_, at| at.saturating_add(self.horizon_secs) > now);
        }
    }

    /// How far back the database must be read to know every session that matters.
    pub(crate) fn horizon_secs(&self) -> i64 {
        self.horizon_secs
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ended.read().map_or(0, |ended| ended.len())
    }
}

/// Loads the sessions ended within the horizon, then follows the database every
/// `period`, so ends recorded elsewhere are refused within that period.
pub(crate) async fn keep_in_step(
    store: Arc<dyn Store>,
    revocations: Arc<Revocations>,
    period: Duration,
) {
    let mut cursor = crate::clock::now().saturating_sub(revocations.horizon_secs());
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let now = crate::clock::now();
        // Times are whole seconds: read one second back so that a session ended
        // in the same second as the last read is not missed.
        match store.ended_since(cursor.saturating_sub(1)).await {
            Ok(ended) => {
                if let Some((_, newest)) = ended.last() {
                    cursor = cursor.max(*newest);
                }
                revocations.insert(ended.iter().map(|(session, at)| (session, *at)));
            }
            Err(error) => tracing::warn!(%error, "cannot read ended sessions"),
        }
        revocations.prune(now);
    }
}

/// Adds each end the database pushes (see [`Store::ended_pushes`]) the moment it
/// arrives, so an end on another instance is refused here within milliseconds rather
/// than at the next read. Returns when the database stops pushing.
pub(crate) async fn follow_pushes(
    mut pushes: tokio::sync::mpsc::Receiver<(SessionId, i64)>,
    revocations: Arc<Revocations>,
) {
    while let Some((session, at)) = pushes.recv().await {
        revocations.insert([(&session, at)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_session_is_refused_until_its_tokens_have_expired() {
        let revocations = Revocations::new(900);
        let session = SessionId("s1".to_owned());

        revocations.insert([(&session, 1000)]);
        revocations.prune(1899);
        let before_horizon = revocations.contains("s1");
        revocations.prune(1900);

        assert!(before_horizon);
        assert!(!revocations.contains("s1"));
        assert_eq!(revocations.len(), 0);
        assert!(!revocations.contains("s2"));
    }
}
