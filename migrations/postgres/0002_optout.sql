-- The opt-out registry (seed 001 section 13): keyed hashes of SSNs or member ids of people who
-- opted out of direct-identifier release. Never the values themselves.
CREATE TABLE optout_keys (
    key_hash    TEXT PRIMARY KEY,
    imported_at TEXT NOT NULL,
    import_id   TEXT NOT NULL
);
