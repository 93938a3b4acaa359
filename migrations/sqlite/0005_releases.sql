-- Releases and DUAs: the request, its lifecycle, the subcommittee decision, every DUA version
-- and the signed approval letters. Status changes are compare-and-swap on `status`.
CREATE TABLE releases (
    id                 TEXT   PRIMARY KEY,
    org_id             TEXT   NOT NULL REFERENCES organizations (id),
    requested_by       TEXT   NOT NULL REFERENCES users (id),
    level              TEXT   NOT NULL CHECK (level IN ('I', 'II', 'III')),
    status             TEXT   NOT NULL,
    request_json       TEXT   NOT NULL,
    approved_elements  TEXT   NOT NULL,
    committee_json     TEXT,
    approved_by        TEXT   REFERENCES users (id),
    approved_at        TEXT,
    dua_version        BIGINT NOT NULL DEFAULT 0,
    revision           BIGINT NOT NULL DEFAULT 0,
    created_at         TEXT   NOT NULL,
    updated_at         TEXT   NOT NULL
);

CREATE INDEX releases_status ON releases (status);
CREATE INDEX releases_org ON releases (org_id);

-- Every change to a release, with the human reason: the access log references an entry by
-- (release, entry) and never holds the text itself.
CREATE TABLE release_history (
    release_id   TEXT   NOT NULL REFERENCES releases (id),
    entry        BIGINT NOT NULL,
    at           TEXT   NOT NULL,
    actor        TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    from_status  TEXT   NOT NULL,
    to_status    TEXT   NOT NULL,
    reason       TEXT,
    PRIMARY KEY (release_id, entry)
);

-- Every version of every DUA; an amendment adds a version, nothing is overwritten.
CREATE TABLE duas (
    release_id        TEXT   NOT NULL REFERENCES releases (id),
    version           BIGINT NOT NULL,
    number            TEXT   NOT NULL,
    effective         TEXT   NOT NULL,
    expiry            TEXT   NOT NULL,
    responsible       TEXT   NOT NULL REFERENCES users (id),
    download_limit    BIGINT NOT NULL,
    networks          TEXT   NOT NULL,
    destruction_days  BIGINT NOT NULL,
    recorded_by       TEXT   NOT NULL,
    recorded_at       TEXT   NOT NULL,
    PRIMARY KEY (release_id, version)
);

-- A DUA number belongs to one release.
CREATE TABLE dua_numbers (
    number      TEXT PRIMARY KEY,
    release_id  TEXT NOT NULL UNIQUE REFERENCES releases (id)
);

-- The named authorized users of each DUA version.
CREATE TABLE dua_users (
    release_id  TEXT   NOT NULL REFERENCES releases (id),
    version     BIGINT NOT NULL,
    user_id     TEXT   NOT NULL REFERENCES users (id),
    PRIMARY KEY (release_id, version, user_id)
);

CREATE INDEX dua_users_user ON dua_users (user_id);

-- The signed approval letter of each DUA version (base64 PDF, hex Ed25519 signature).
CREATE TABLE approval_letters (
    release_id   TEXT   NOT NULL REFERENCES releases (id),
    dua_version  BIGINT NOT NULL,
    pdf_base64   TEXT   NOT NULL,
    signature    TEXT   NOT NULL,
    public_key   TEXT   NOT NULL,
    created_at   TEXT   NOT NULL,
    PRIMARY KEY (release_id, dua_version)
);
