-- Timestamps are Unix epoch milliseconds.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER
);

-- Only a SHA-256 of each token is kept: a copy of the database opens no sessions.
CREATE TABLE sessions (
    token_hash BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE channels (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('group', 'direct')),
    name       TEXT,
    -- "low_user_id:high_user_id" for direct channels: at most one DM per pair.
    direct_key TEXT    UNIQUE,
    created_by INTEGER NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    -- The newest message's seq; the next message takes last_seq + 1 in the same transaction.
    last_seq   INTEGER NOT NULL DEFAULT 0,
    CHECK ((kind = 'group' AND name IS NOT NULL AND direct_key IS NULL)
        OR (kind = 'direct' AND name IS NULL AND direct_key IS NOT NULL))
);

CREATE TABLE channel_members (
    channel_id    INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'member')),
    joined_at     INTEGER NOT NULL,
    -- Forward-only read pointer: every message with seq <= last_read_seq has been read.
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id)
) WITHOUT ROWID;
CREATE INDEX channel_members_user_id ON channel_members (user_id, channel_id);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    sender_id  INTEGER NOT NULL REFERENCES users (id),
    -- The sender's idempotency key (UUID): a retried send finds the original.
    client_id  TEXT    NOT NULL,
    -- Emptied when the message is deleted.
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    edited_at  INTEGER,
    deleted_at INTEGER,
    -- Also the index for paging a channel by seq.
    UNIQUE (channel_id, seq),
    UNIQUE (sender_id, client_id)
);
