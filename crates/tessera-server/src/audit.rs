//! The audit trail: security events (logins, refreshes, reuse, logouts, password
//! changes, ended sessions) as structured log lines under the `audit` target and as rows
//! of `audit_events`, kept for a configured time. Never a password, token or hash.

use crate::clock;
use crate::state::AppState;
use crate::store::AuditEvent;

/// Who and where an event concerns.
#[derive(Debug, Default, Clone)]
pub(crate) struct Actor<'a> {
    pub(crate) user: Option<&'a str>,
    pub(crate) session: Option<&'a str>,
    pub(crate) ip: Option<&'a str>,
    pub(crate) user_agent: Option<&'a str>,
}

/// Logs and stores one event. A failure to store is logged, never fatal: the request
/// that caused the event has already happened.
pub(crate) async fn record(state: &AppState, kind: &str, actor: Actor<'_>, detail: Option<&str>) {
    tracing::info!(
        target: "audit",
        kind,
        user = actor.user,
        session = actor.session,
        ip = actor.ip,
        user_agent = actor.user_agent,
        detail,
        "audit event"
    );
    let event = AuditEvent {
        at: clock::now(),
        kind: kind.to_owned(),
        user_id: actor.user.map(str::to_owned),
        session_id: actor.session.map(str::to_owned),
        ip: actor.ip.map(str::to_owned),
        user_agent: actor.user_agent.map(str::to_owned),
        detail: detail.map(str::to_owned),
    };
    if let Err(error) = state.store.record_audit(&event).await {
        tracing::error!(%error, kind, "cannot store audit event");
    }
}
