-- Login sessions of the local auth mode. Only a SHA-256 of each session token is stored, so a
-- copy of this table lets nobody in.
CREATE TABLE sessions (
    token_sha256 text PRIMARY KEY,
    username     text NOT NULL,
    role         text NOT NULL CHECK (role IN ('viewer', 'operator')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
