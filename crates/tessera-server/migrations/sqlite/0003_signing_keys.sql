-- Signing keys kept in the database (when a master key is configured): each private
-- key sealed with AES-256-GCM under the master key, never in the clear.

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY NOT NULL,
    alg          TEXT NOT NULL,
    sealed       BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL
) STRICT;
