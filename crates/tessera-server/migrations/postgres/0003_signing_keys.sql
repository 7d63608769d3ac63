-- Signing keys shared by every instance: each private key sealed with AES-256-GCM under
-- the master key, never in the clear.

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    sealed       BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL
);

-- Every instance learns at once that a session ended (LISTEN tessera_session_ended),
-- whichever statement ended it, instead of at its next poll.
CREATE FUNCTION tessera_notify_session_ended() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('tessera_session_ended', NEW.id || ' ' || NEW.ended_at);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER sessions_notify_ended
    AFTER UPDATE OF ended_at ON sessions
    FOR EACH ROW
    WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)
    EXECUTE FUNCTION tessera_notify_session_ended();
