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
    let user = subject.user.map(|user| user.0.as_str());
    let session = subject.session.map(|session| session.0.as_str());
    let ip = origin.ip_text();
    state.telemetry.audit_event(kind);
    tracing::info!(
        target: "audit",
        kind,
        user,
        session,
        ip = ip.as_deref(),
        user_agent = origin.user_agent.as_deref(),
        detail,
        "audit event"
    );
    let event = AuditEvent {
        at: clock::now(),
        kind: kind.to_owned(),
        user_id: user.map(str::to_owned),
        session_id: session.map(str::to_owned),
        ip,
        user_agent: origin.user_agent.clone(),
        detail: detail.map(str::to_owned),
    };
    if let Err(error) = state.store.record_audit(&event).await {
        tracing::error!(%error, kind, "cannot store audit event");
    }
}
