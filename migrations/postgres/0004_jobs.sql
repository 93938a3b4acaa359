-- Durable jobs: claimed with a lease, heartbeated, retried with back-off, cancellable.
CREATE TABLE jobs (
    id               TEXT    PRIMARY KEY,
    kind             TEXT    NOT NULL,
    release_id       TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    max_attempts     BIGINT NOT NULL,
    run_after        TEXT    NOT NULL,
    lease_owner      TEXT,
    lease_expires_at TEXT,
    heartbeat_at     TEXT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    progress         TEXT    NOT NULL DEFAULT '{}',
    error            TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    finished_at      TEXT
);

-- A release has at most one live job of a kind: starting it twice runs it once.
CREATE UNIQUE INDEX jobs_one_live_per_release ON jobs (release_id, kind)
    WHERE state IN ('queued', 'running');
CREATE INDEX jobs_claimable ON jobs (state, run_after);

-- What a job did, line by line (never PHI: lines come from Steward's own messages).
CREATE TABLE job_log (
    job_id TEXT    NOT NULL REFERENCES jobs (id),
    seq    BIGINT NOT NULL,
    at     TEXT    NOT NULL,
    line   TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
);
