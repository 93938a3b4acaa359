-- Downloads: every file of an extract gets an id to name it in links and in the access log;
-- each transfer of a file to a user is a row (its reservation and what it sent); revocations
-- of access by user, organization, release or file.
ALTER TABLE extract_files ADD COLUMN file_id TEXT;
UPDATE extract_files SET file_id = gen_random_uuid()::text;
CREATE UNIQUE INDEX extract_files_file_id ON extract_files (file_id);

-- One row per user and file: the row a transfer's start locks, so that two concurrent starts
-- see each other's reservation and the download limit holds.
CREATE TABLE download_quotas (
    user_id    TEXT NOT NULL REFERENCES users (id),
    file_id    TEXT NOT NULL,
    locked_at  TEXT NOT NULL,
    PRIMARY KEY (user_id, file_id)
);

-- A transfer reserves its length against the limit while it runs (its heartbeat fresh), and
-- counts what it sent once it ends or its heartbeat goes stale (its server died).
CREATE TABLE download_transfers (
    id            TEXT   PRIMARY KEY,
    user_id       TEXT   NOT NULL REFERENCES users (id),
    file_id       TEXT   NOT NULL,
    release_id    TEXT   NOT NULL REFERENCES releases (id),
    range_start   BIGINT NOT NULL,
    range_len     BIGINT NOT NULL,
    sent          BIGINT NOT NULL,
    state         TEXT   NOT NULL,
    started_at    TEXT   NOT NULL,
    heartbeat_at  TEXT   NOT NULL,
    ended_at      TEXT
);

CREATE INDEX download_transfers_user_file ON download_transfers (user_id, file_id);
CREATE INDEX download_transfers_release ON download_transfers (release_id);

-- Access stopped by the executive director: one scope (user, organization, release or file),
-- in force until lifted. The reason is the director's text; the access log records only that
-- a revocation was made and lifted. `created_by` and `lifted_by` are a user id or `system`
-- (the operator's shell).
CREATE TABLE revocations (
    id          TEXT PRIMARY KEY,
    scope_kind  TEXT NOT NULL,
    scope_id    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    lifted_by   TEXT,
    lifted_at   TEXT
);

CREATE INDEX revocations_scope ON revocations (scope_kind, scope_id);
