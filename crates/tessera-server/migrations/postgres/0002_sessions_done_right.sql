-- Grace-window replays: a spent refresh token points at its successor, sealed with
-- a key only the spent token's holder can derive. Roles for users. Ended sessions are
-- read in order of their end. The audit trail.

ALTER TABLE refresh_tokens ADD COLUMN successor_hash BYTEA;
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed BYTEA;

-- Space-separated role names.
ALTER TABLE users ADD COLUMN roles TEXT NOT NULL DEFAULT '';

CREATE INDEX sessions_by_end ON sessions(ended_at) WHERE ended_at IS NOT NULL;

CREATE TABLE audit_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    ip         TEXT,
    user_agent TEXT,
    detail     TEXT
);

CREATE INDEX audit_events_by_time ON audit_events(at);
