-- Each release's own age identity, stored only wrapped (age-encrypted) under the master
-- identity, which lives outside the database. Deleting the row is the cryptographic erase.
CREATE TABLE release_keys (
    release_id  TEXT PRIMARY KEY REFERENCES releases (id),
    recipient   TEXT NOT NULL,
    wrapped_hex TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- The files of a finished extract: what the manifest lists, recorded only by the job attempt
-- that still held its lease when it finished.
CREATE TABLE extract_files (
    release_id        TEXT   NOT NULL REFERENCES releases (id),
    name              TEXT   NOT NULL,
    kind              TEXT   NOT NULL,
    object_key        TEXT   NOT NULL UNIQUE,
    job_id            TEXT   NOT NULL REFERENCES jobs (id),
    rows_count        BIGINT,
    plaintext_bytes   BIGINT NOT NULL,
    plaintext_sha256  TEXT   NOT NULL,
    ciphertext_bytes  BIGINT NOT NULL,
    ciphertext_sha256 TEXT   NOT NULL,
    created_at        TEXT   NOT NULL,
    PRIMARY KEY (release_id, name)
);
