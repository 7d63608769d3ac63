-- Users, their sessions (refresh families), the hashed refresh tokens of each
-- session, and the demo notes. Times are seconds since the Unix epoch, as in the
-- SQLite schema, so both stores share one model.
--
-- `seq` keeps insertion order, which SQLite keeps as `rowid`: listings order by
-- creation time, then by it, so two rows made in the same second keep their order.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    -- Lower-cased, trimmed username: uniqueness regardless of case.
    username_key  TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL,
    seq           BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id    TEXT,
    user_agent   TEXT,
    ip           TEXT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    end_reason   TEXT,
    seq          BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE refresh_tokens (
    -- SHA-256 of the token: the token itself is never stored.
    token_hash BYTEA PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    issued_at  BIGINT NOT NULL,
    spent_at   BIGINT
);

CREATE INDEX refresh_tokens_by_session ON refresh_tokens(session_id);

CREATE TABLE notes (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    seq        BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE INDEX notes_by_user ON notes(user_id, created_at);
