//! What durable commits cost: refresh-token rotations per second through the real
//! SQLite store with `synchronous=FULL` (what the server runs: a renewal answered has
//! reached the disk) and with `NORMAL` (the WAL is synced only at checkpoints, so a
//! power loss can undo renewals already answered; a killed process loses nothing either
//! way). Ignored by default; `bench/durable-writes.sh` runs it in release mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::sqlite::SqliteSynchronous;
use tessera_server::store::{
    AuditEvent, NewSession, NewUser, RefreshHash, SessionId, SqliteStore, Store, User, UserId,
};

/// Concurrent renewing clients, each on a session of its own.
const CLIENTS: usize = 16;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check: run by bench/durable-writes.sh"]
async fn durable_commits_cost_is_measured_against_normal_sync() {
    let seconds = std::env::var("DURABLE_WRITES_SECS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10);
    let duration = Duration::from_secs(seconds);

    let full = rotations_per_second(SqliteSynchronous::Full, duration).await;
    let normal = rotations_per_second(SqliteSynchronous::Normal, duration).await;

    println!(
        "refresh rotations through the SQLite store, {CLIENTS} concurrent clients, \
         {seconds} s each:"
    );
    println!("  synchronous=FULL    {full:8.0} per second");
    println!("  synchronous=NORMAL  {normal:8.0} per second");
    println!(
        "  durable commits cost {:.0} % of NORMAL's throughput",
        (1.0 - full / normal) * 100.0
    );
}

/// Rotations per second for `duration` with `CLIENTS` clients renewing in a loop.
async fn rotations_per_second(synchronous: SqliteSynchronous, duration: Duration) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_with_synchronous(&dir.path().join("tessera.db"), synchronous)
            .await
            .unwrap(),
    );
    let user = UserId(uuid::Uuid::new_v4().to_string());
    store
        .create_user(NewUser {
            user: User {
                id: user.clone(),
                username: "bench".to_owned(),
                created_at: NOW,
                roles: Vec::new(),
                disabled: false,
            },
            username_key: "bench".to_owned(),
            password_hash: "hash".to_owned(),
        })
        .await
        .unwrap();

    let rotated = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (store, user, rotated) = (Arc::clone(&store), user.clone(), Arc::clone(&rotated));
            let user_id = user.0.clone();
            tokio::spawn(async move {
                let mut current = random_hash();
                let session = NewSession {
                    id: SessionId(uuid::Uuid::new_v4().to_string()),
                    user_id: user,
                    client_id: None,
                    user_agent: None,
                    ip: None,
                    created_at: NOW,
                    expires_at: NOW + 86_400,
                };
                assert!(store.open_session(session, current, "hash").await.unwrap());
                // What a renewal through HTTP stores with its spend.
                let event = AuditEvent {
                    at: NOW,
                    kind: "refresh".to_owned(),
                    user_id: Some(user_id.clone()),
                    ip: Some("127.0.0.1".to_owned()),
                    user_agent: Some("bench".to_owned()),
                    ..AuditEvent::default()
                };
                while Instant::now() < deadline {
                    let successor = random_hash();
                    // A sealed pair is about 700 bytes: an access token and a refresh
                    // token under AES-GCM.
                    let spent = store
                        .spend_refresh(current, successor, &[7; 700], NOW, &event)
                        .await
                        .unwrap();
                    assert!(spent);
                    current = successor;
                    rotated.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    store.close().await;
    rotated.load(Ordering::Relaxed) as f64 / duration.as_secs_f64()
}

const NOW: i64 = 1_800_000_000;

fn random_hash() -> RefreshHash {
    let mut bytes = [0; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    RefreshHash(bytes)
}
