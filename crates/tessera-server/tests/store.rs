//! The `Store` contract, checked the same way on every backend: SQLite always, and
//! PostgreSQL as well when `TESSERA_TEST_DATABASE_URL` names a server. What the service
//! relies on is checked here directly, below HTTP: one successor however many spends
//! race, conditional session opening, the ways sessions end, names unique regardless
//! of case, and failures that a retry can cure told apart from faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection as _;
use support::TestDatabase;
use tessera_server::store::{
    self, AuditEvent, NewSession, NewUser, Note, RefreshHash, SessionId, Store, StoreError, User,
    UserId,
};

/// A store under test, with what must outlive it.
struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    database: Option<TestDatabase>,
    _dir: tempfile::TempDir,
}

/// Every backend this run can reach, each empty and migrated.
async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = store::open(None, &dir.path().join("tessera.db"))
        .await
        .unwrap();
    let mut backends = vec![Backend {
        name: "SQLite",
        store: sqlite,
        database: None,
        _dir: dir,
    }];
    if let Some(database) = TestDatabase::create_if_asked().await {
        let postgres = store::open(Some(&database.url()), Path::new("unused"))
            .await
            .unwrap();
        backends.push(Backend {
            name: "PostgreSQL",
            store: postgres,
            database: Some(database),
            _dir: tempfile::tempdir().unwrap(),
        });
    }
    backends
}

const NOW: i64 = 1_800_000_000;
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

fn token(byte: u8) -> RefreshHash {
    RefreshHash([byte; 32])
}

/// A random token hash, for tests that mint many.
fn fresh_token() -> RefreshHash {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    RefreshHash(bytes)
}

async fn create_user(store: &dyn Store, username: &str, created_at: i64) -> User {
    let user = User {
        id: UserId(uuid::Uuid::new_v4().to_string()),
        username: username.to_owned(),
        created_at,
        roles: vec!["reader".to_owned()],
        disabled: false,
    };
    store
        .create_user(NewUser {
            user: user.clone(),
            username_key: username.to_lowercase(),
            password_hash: HASH.to_owned(),
        })
        .await
        .unwrap();
    user
}

fn new_session(user: &User, created_at: i64) -> NewSession {
    NewSession {
        id: SessionId(uuid::Uuid::new_v4().to_string()),
        user_id: user.id.clone(),
        client_id: Some("cli".to_owned()),
        user_agent: Some("tests".to_owned()),
        ip: Some("127.0.0.1".to_owned()),
        created_at,
        expires_at: created_at + 3600,
    }
}

/// The audit event of a renewal, told apart by `detail`.
fn renewal_event(detail: &str) -> AuditEvent {
    AuditEvent {
        at: NOW,
        kind: "refresh".to_owned(),
        detail: Some(detail.to_owned()),
        ..AuditEvent::default()
    }
}

/// The details of the stored audit events, newest first.
async fn audit_details(store: &dyn Store) -> Vec<String> {
    store
        .audit_events(1000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|event| event.detail)
        .collect()
}

/// Opens a session with `first` as its refresh token.
async fn open(store: &dyn Store, user: &User, first: RefreshHash, at: i64) -> SessionId {
    let session = new_session(user, at);
    let id = session.id.clone();
    assert!(store.open_session(session, first, HASH).await.unwrap());
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_spends_of_one_token_yield_exactly_one_successor() {
    for backend in backends().await {
        let store = &backend.store;
        let user = create_user(store.as_ref(), "racer", NOW).await;
        let presented = token(1);
        let session = open(store.as_ref(), &user, presented, NOW).await;

        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let mut spends = Vec::new();
        for contender in 0..50u8 {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            spends.push(tokio::spawn(async move {
                let successor = token(100 + contender);
                let sealed = vec![contender; 64];
                let event = renewal_event(&contender.to_string());
                barrier.wait().await;
                let won = store
                    .spend_refresh(presented, successor, &sealed, NOW + 5, &event)
                    .await
                    .unwrap();
                (won, successor)
            }));
        }
        let mut winners = Vec::new();
        for spend in spends {
            let (won, successor) = spend.await.unwrap();
            if won {
                winners.push(successor);
            }
        }

        assert_eq!(winners.len(), 1, "{}", backend.name);
        let spent = store
            .refresh_record(presented, NOW + 6, 3600)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(spent.spent_at, Some(NOW + 5), "{}", backend.name);
        assert_eq!(spent.successor, Some(winners[0]), "{}", backend.name);
        let winner_byte = winners[0].0[0] - 100;
        assert_eq!(spent.successor_sealed, Some(vec![winner_byte; 64]));
        // Only the winner's audit event is stored, with its spend.
        assert_eq!(
            audit_details(store.as_ref()).await,
            [winner_byte.to_string()],
            "{}",
            backend.name
        );
        let successor = store
            .refresh_record(winners[0], NOW + 6, 3600)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(successor.session, session, "{}", backend.name);
        assert_eq!(successor.spent_at, None, "{}", backend.name);
        assert!(successor.session_live, "{}", backend.name);
        assert_eq!(successor.roles, vec!["reader".to_owned()]);
    }
}

#[tokio::test]
async fn a_username_taken_in_any_case_is_a_conflict() {
    for backend in backends().await {
        let store = backend.store.as_ref();
        create_user(store, "Alice", NOW).await;

        let again = store
            .create_user(NewUser {
                user: User {
                    id: UserId(uuid::Uuid::new_v4().to_string()),
                    username: "ALICE".to_owned(),
                    created_at: NOW,
                    roles: Vec::new(),
                    disabled: false,
                },
                username_key: "alice".to_owned(),
                password_hash: HASH.to_owned(),
            })
            .await;

        assert!(
            matches!(again, Err(StoreError::Conflict)),
            "{}: {again:?}",
            backend.name
        );
        assert_eq!(store.users().await.unwrap().len(), 1, "{}", backend.name);
    }
}

#[tokio::test]
async fn users_read_back_as_written_oldest_first() {
    for backend in backends().await {
        let store = backend.store.as_ref();
        let first = create_user(store, "Zoe", NOW).await;
        let second = create_user(store, "adam", NOW).await;
        let third = create_user(store, "bea", NOW + 1).await;

        let names: Vec<String> = store
            .users()
            .await
            .unwrap()
            .into_iter()
            .map(|user| user.username)
            .collect();
        let found = store.credentials("zoe").await.unwrap().unwrap();

        assert_eq!(names, ["Zoe", "adam", "bea"], "{}", backend.name);
        assert_eq!(found.user.id, first.id, "{}", backend.name);
        assert_eq!(found.password_hash, HASH, "{}", backend.name);
        assert_eq!(found.user.roles, ["reader"], "{}", backend.name);
        assert!(!found.user.disabled, "{}", backend.name);
        let by_id = store.user(&third.id).await.unwrap().unwrap();
        assert_eq!(by_id.username, "bea", "{}", backend.name);
        assert!(store.credentials("nobody").await.unwrap().is_none());
        assert!(
            store
                .set_roles(&second.id, &["a".into(), "b".into()])
                .await
                .unwrap()
        );
        let roles = store.user(&second.id).await.unwrap().unwrap().roles;
        assert_eq!(roles, ["a", "b"], "{}", backend.name);
        let nobody = UserId("nobody".to_owned());
        assert!(!store.set_roles(&nobody, &[]).await.unwrap());
    }
}

#[tokio::test]
async fn a_session_opens_only_for_the_verified_hash_of_an_enabled_user() {
    for backend in backends().await {
        let store = backend.store.as_ref();
        let user = create_user(store, "carol", NOW).await;

        let stale = store
            .open_session(new_session(&user, NOW), fresh_token(), "$argon2id$old")
            .await
            .unwrap();
        store.set_disabled(&user.id, true, NOW).await.unwrap();
        let disabled = store
            .open_session(new_session(&user, NOW), fresh_token(), HASH)
            .await
            .unwrap();
        store.set_disabled(&user.id, false, NOW).await.unwrap();
        let first = fresh_token();
        let opened = store
            .open_session(new_session(&user, NOW), first, HASH)
            .await
            .unwrap();

        assert!(!stale && !disabled && opened, "{}", backend.name);
        let sessions = store.open_sessions(&user.id, NOW).await.unwrap();
        assert_eq!(sessions.len(), 1, "{}", backend.name);
        assert_eq!(sessions[0].client_id.as_deref(), Some("cli"));
        assert_eq!(sessions[0].ip.as_deref(), Some("127.0.0.1"));
        let record = store.refresh_record(first, NOW, 60).await.unwrap().unwrap();
        assert!(record.session_live && record.spent_at.is_none());
        assert_eq!(record.session_expires_at, NOW + 3600, "{}", backend.name);
    }
}

#[tokio::test]
async fn liveness_follows_idle_time_absolute_end_and_the_user() {
    for backend in backends().await {
        let store = backend.store.as_ref();
        let user = create_user(store, "dave", NOW).await;
        let first = fresh_token();
        open(store, &user, first, NOW).await;
        let live = |at: i64, idle: i64| async move {
            store
                .refresh_record(first, at, idle)
                .await
                .unwrap()
                .unwrap()
                .session_live
        };

        assert!(live(NOW + 59, 60).await, "{}", backend.name);
        assert!(!live(NOW + 60, 60).await, "{}", backend.name);
        assert!(!live(NOW + 3600, 7200).await, "{}", backend.name);
        store.set_disabled(&user.id, true, NOW).await.unwrap();
        assert!(!live(NOW + 1, 60).await, "{}", backend.name);
        assert!(
            store
                .refresh_record(fresh_token(), NOW, 60)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn a_spend_moves_last_use_and_an_ended_session_spends_nothing() {
    for backend in backends().await {
        let store = backend.store.as_ref();
        let user = create_user(store, "erin", NOW).await;
        let first = fresh_token();
        let session = open(store, &user, first, NOW).await;
        let second = fresh_token();

        assert!(
            store
                .spend_refresh(first, second, b"sealed", NOW + 50, &renewal_event("first"))
                .await
                .unwrap()
        );
        // Idle since the spend, not since the login.
        let record = store.refresh_record(second, NOW + 100, 60).await.unwrap();
        assert!(record.unwrap().session_live, "{}", backend.name);
        assert!(
            !store
                .spend_refresh(first, fresh_token(), b"", NOW + 51, &renewal_event("again"))
                .await
                .unwrap()
        );

        assert!(
            store
                .end_session(&session, &user.id, "logout", NOW + 60)
                .await
                .unwrap()
        );
        assert!(
            !store
                .end_session(&session, &user.id, "logout", NOW + 61)
                .await
                .unwrap()
        );
        let third = fresh_token();
        assert!(
            !store
                .spend_refresh(second, third, b"", NOW + 62, &renewal_event("ended"))
                .await
                .unwrap()
        );
        assert!(
            store
                .refresh_record(third, NOW + 62, 60)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            !store
                .spend_refresh(fresh_token(), third, b"", NOW, &renewal_event("unknown"))
                .await
                .unwrap()
        );
        // Spends that spent nothing stored no event.
        assert_eq!(audit_details(store).await, ["first"], "{}", backend.name);
    }
}

#[tokio::test]
async fn sessions_end_by_owner_only_and_all_but_one() {
    for backend in backends().await {
        let store = backend.store.as_ref();
        let user = create_user(store, "fay", NOW).await;
        let other = create_user(store, "gus", NOW).await;
        let keep = open(store, &user, fresh_token(), NOW).await;
        let a = open(store, &user, fresh_token(), NOW).await;
        let b = open(store, &user, fresh_token(), NOW + 1).await;
        let theirs = open(store, &other, fresh_token(), NOW).await;

        assert!(
            !store
                .end_session(&theirs, &user.id, "x", NOW)
                .await
                .unwrap()
        );
        assert_eq!(store.session_owner(&theirs).await.unwrap(), Some(other.id));
        let listed: Vec<SessionId> = store
            .open_sessions(&user.id, NOW + 2)
            .await
            .unwrap()
            .into_iter()
            .map(|session| session.id)
            .collect();
        assert_eq!(
            listed,
            [keep.clone(), a.clone(), b.clone()],
            "{}",
            backend.name
        );

        let ended = store
            .end_user_sessions(&user.id, Some(&keep), "others", NOW + 10)
            .await
            .unwrap();
        assert_eq!(
            ended.into_iter().collect::<HashSet<_>>(),
            HashSet::from([a.clone(), b.clone()]),
            "{}",
            backend.name
        );
        let ended = store
            .set_password(&user.id, "$new", None, NOW + 20)
            .await
            .unwrap();
        assert_eq!(ended, std::slice::from_ref(&keep), "{}", backend.name);
        let credentials = store.credentials("fay").await.unwrap().unwrap();
        assert_eq!(credentials.password_hash, "$new", "{}", backend.name);

        let since: Vec<(SessionId, i64)> = store.ended_since(NOW + 10).await.unwrap();
        let times: Vec<i64> = since.iter().map(|(_, at)| *at).collect();
        assert_eq!(times, [NOW + 10, NOW + 10, NOW + 20], "{}", backend.name);
        assert_eq!(since[2].0, keep, "{}", backend.name);
        assert!(store.ended_since(NOW + 21).await.unwrap().is_empty());
        assert!(store.open_sessions(&user.id, NOW).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn audit_events_come_newest_first_and_old_ones_are_pruned() {
    for backend in backends().await {
        let store = backend.store.as_ref();
        for (at, kind) in [(NOW, "first"), (NOW + 1, "second"), (NOW + 2, "third")] {
            let event = AuditEvent {
                at,
                kind: kind.to_owned(),
                user_id: Some("u".to_owned()),
                ip: Some("127.0.0.1".to_owned()),
                ..AuditEvent::default()
            };
            store.record_audit(&event).await.unwrap();
        }

        let newest: Vec<String> = store
            .audit_events(2)
            .await
            .unwrap()
            .into_iter()
            .map(|event| event.kind)
            .collect();
        assert_eq!(newest, ["third", "second"], "{}", backend.name);
        assert_eq!(
            store.prune_audit(NOW + 2).await.unwrap(),
            2,
            "{}",
            backend.name
        );
        let left = store.audit_events(10).await.unwrap();
        assert_eq!(left.len(), 1, "{}", backend.name);
        assert_eq!(left[0].user_id.as_deref(), Some("u"));
        assert_eq!(left[0].session_id, None, "{}", backend.name);
    }
}

#[tokio::test]
async fn notes_belong_to_their_user_in_order_of_creation() {
    for backend in backends().await {
        let store = backend.store.as_ref();
        let owner = create_user(store, "hal", NOW).await;
        let stranger = create_user(store, "ida", NOW).await;
        for (id, title) in [("n2", "b"), ("n1", "a")] {
            let note = Note {
                id: id.to_owned(),
                title: title.to_owned(),
                body: "body".to_owned(),
                created_at: NOW,
                updated_at: NOW,
            };
            store.create_note(&owner.id, &note).await.unwrap();
        }

        let ids: Vec<String> = store
            .notes(&owner.id)
            .await
            .unwrap()
            .into_iter()
            .map(|note| note.id)
            .collect();
        assert_eq!(ids, ["n2", "n1"], "{}", backend.name);
        assert!(store.note(&stranger.id, "n1").await.unwrap().is_none());
        let updated = store
            .update_note(&owner.id, "n1", "A", "new", NOW + 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((updated.title.as_str(), updated.updated_at), ("A", NOW + 5));
        assert_eq!(updated.created_at, NOW, "{}", backend.name);
        assert!(
            store
                .update_note(&stranger.id, "n1", "x", "x", NOW)
                .await
                .unwrap()
                .is_none()
        );
        assert!(!store.delete_note(&stranger.id, "n1").await.unwrap());
        assert!(store.delete_note(&owner.id, "n1").await.unwrap());
        assert!(store.note(&owner.id, "n1").await.unwrap().is_none());
        store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn postgres_lock_waits_past_the_timeout_are_busy_not_faults() {
    for backend in backends().await {
        let Some(database) = &backend.database else {
            continue;
        };
        let store = backend.store.as_ref();
        let user = create_user(store, "jan", NOW).await;
        let mut holder = database.connect().await;
        let mut holding = holder.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(&user.id.0)
            .execute(&mut *holding)
            .await
            .unwrap();

        let started = std::time::Instant::now();
        let blocked = store.set_roles(&user.id, &["admin".to_owned()]).await;

        assert!(
            matches!(blocked, Err(StoreError::Busy)),
            "{}: {blocked:?}",
            backend.name
        );
        assert!(started.elapsed() < Duration::from_secs(15));
        holding.rollback().await.unwrap();
        assert!(
            store
                .set_roles(&user.id, &["admin".to_owned()])
                .await
                .unwrap()
        );
    }
}

#[tokio::test]
async fn postgres_connections_lost_are_replaced_by_the_pool() {
    for backend in backends().await {
        let Some(database) = &backend.database else {
            continue;
        };
        let store = backend.store.as_ref();
        create_user(store, "kim", NOW).await;
        let mut admin = database.connect().await;

        // What a database restart or a failover does to every open connection.
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(database.name())
        .execute(&mut admin)
        .await
        .unwrap();

        let users = store.users().await.unwrap();
        assert_eq!(users.len(), 1, "{}", backend.name);
        store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn only_sessions_that_can_still_renew_are_counted_as_open() {
    for backend in backends().await {
        let store = backend.store.as_ref();
        let user = create_user(store, "counted", NOW).await;
        open(store, &user, fresh_token(), NOW).await;
        let ended = open(store, &user, fresh_token(), NOW).await;
        open(store, &user, fresh_token(), NOW - 3000).await;
        store
            .end_session(&ended, &user.id, "logout", NOW + 1)
            .await
            .unwrap();

        let open_now = store.count_open_sessions(NOW + 2, NOW - 4000).await;
        let idle_ones_left_out = store.count_open_sessions(NOW + 2, NOW - 60).await;
        let expired_ones_left_out = store.count_open_sessions(NOW + 700, NOW - 4000).await;

        // Open: the one opened at NOW, and the one opened at NOW - 3000 (last used
        // then, and ending at NOW + 600); the ended one never counts.
        assert_eq!(open_now.unwrap(), 2, "{}", backend.name);
        assert_eq!(idle_ones_left_out.unwrap(), 1, "{}", backend.name);
        assert_eq!(expired_ones_left_out.unwrap(), 1, "{}", backend.name);
    }
}
