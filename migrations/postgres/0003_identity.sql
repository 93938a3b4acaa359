-- Identity and access: organizations, users, roles, second factors, sessions, API tokens,
-- recipient keys and login throttling. Secrets are stored only as hashes.
CREATE TABLE organizations (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    created_at  TEXT    NOT NULL
);

CREATE TABLE users (
    id              TEXT    PRIMARY KEY,
    org_id          TEXT    NOT NULL REFERENCES organizations (id),
    username        TEXT    NOT NULL UNIQUE,
    display_name    TEXT    NOT NULL,
    password_hash   TEXT    NOT NULL,
    totp_secret     TEXT,
    totp_last_step  BIGINT  NOT NULL DEFAULT 0,
    disabled        BIGINT  NOT NULL DEFAULT 0,
    failed_logins   BIGINT  NOT NULL DEFAULT 0,
    lockouts        BIGINT  NOT NULL DEFAULT 0,
    locked_until    TEXT,
    created_at      TEXT    NOT NULL
);

CREATE TABLE user_roles (
    user_id TEXT NOT NULL REFERENCES users (id),
    role    TEXT NOT NULL,
    PRIMARY KEY (user_id, role)
);

CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id),
    code_hash  TEXT NOT NULL,
    used_at    TEXT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE recipient_keys (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    kind        TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    label       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (user_id, public_key)
);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id),
    csrf_hash     TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    revoked_at    TEXT,
    revoke_reason TEXT
);

CREATE TABLE refresh_tokens (
    token_hash  TEXT PRIMARY KEY,
    session_id  TEXT NOT NULL REFERENCES sessions (id),
    created_at  TEXT NOT NULL,
    used_at     TEXT
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    roles       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Failed logins per client address; per-account counters live on `users`.
CREATE TABLE login_throttle (
    client_addr   TEXT   PRIMARY KEY,
    failures      BIGINT NOT NULL,
    lockouts      BIGINT NOT NULL,
    locked_until  TEXT
);
