-- Grace-window replays: a spent refresh token points at its successor, sealed with
-- a key only the spent token's holder can derive. Roles for users. Ended sessions are
-- read in order of their end. The audit trail.

ALTER TABLE refresh_tokens ADD COLUMN successor_hash BLOB;
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed BLOB;

-- Space-separated role names.
ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '';

CREATE INDEX sessions_by_end ON sessions(ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT
) STRICT;

CREATE INDEX audit_events_by_time ON audit_events(at);
