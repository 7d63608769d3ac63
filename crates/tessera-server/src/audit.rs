//! The audit trail: security events (logins, refreshes, reuse, logouts, password
//! changes, ended sessions) as structured log lines under the `audit` target and as rows
//! of `audit_events`, kept for a configured time. Never a password, token or hash.

use crate::clock;
use crate::origin::Origin;
use crate::state::AppState;
use crate::store::{AuditEvent, SessionId, UserId};

/// Which user and session an event concerns, when known.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) user: Option<&'a UserId>,
    pub(crate) session: Option<&'a SessionId>,
}

impl<'a> Subject<'a> {
    pub(crate) fn of(user: &'a UserId, session: &'a SessionId) -> Self {
        Self {
            user: Some(user),
            session: Some(session),
        }
    }
}

/// Logs and stores one event. A failure to store is logged, never fatal: the request
/// that caused the event has already happened.
pub(crate) async fn record(
    state: &AppState,
    kind: &str,
    origin: &Origin,
    subject: Subject<'_>,
    detail: Option<&str>,
) {
    let event = event(kind, origin, subject, detail);
    announce(state, &event);
    if let Err(error) = state.store.record_audit(&event).await {
        tracing::error!(%error, kind, "cannot store audit event");
    }
}

/// One event as the store keeps it, stamped now; stored by whoever takes it (a
/// renewal stores its event in the transaction that spends the token).
pub(crate) fn event(
    kind: &str,
    origin: &Origin,
    subject: Subject<'_>,
    detail: Option<&str>,
) -> AuditEvent {
    AuditEvent {
        at: clock::now(),
        kind: kind.to_owned(),
        user_id: subject.user.map(|user| user.0.clone()),
        session_id: subject.session.map(|session| session.0.clone()),
        ip: origin.ip_text(),
        user_agent: origin.user_agent.clone(),
        detail: detail.map(str::to_owned),
    }
}

/// Logs an event under the `audit` target and counts it, once it has happened.
pub(crate) fn announce(state: &AppState, event: &AuditEvent) {
    state.telemetry.audit_event(&event.kind);
    tracing::info!(
        target: "audit",
        kind = event.kind,
        user = event.user_id.as_deref(),
        session = event.session_id.as_deref(),
        ip = event.ip.as_deref(),
        user_agent = event.user_agent.as_deref(),
        detail = event.detail.as_deref(),
        "audit event"
    );
}
