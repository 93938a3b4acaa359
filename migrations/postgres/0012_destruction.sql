-- Destruction demands: one per release, from the director's demand (or the DUA's end) to the
-- signed certificate and the recipient's attestation. The erase job fills the columns in
-- order: the plan (what exists, recorded before anything is erased), the erase of the wrapped
-- release identity (with the access log's checkpoint at that moment), the certificate.
CREATE TABLE destruction_demands (
    release_id             TEXT PRIMARY KEY REFERENCES releases (id),
    demanded_by            TEXT NOT NULL,
    demanded_at            TEXT NOT NULL,
    deadline               TEXT NOT NULL,
    reason                 TEXT NOT NULL,
    revocation_id          TEXT NOT NULL,
    plan_json              TEXT,
    erased_at              TEXT,
    checkpoint             TEXT,
    certificate_json       TEXT,
    certificate_signature  TEXT,
    attestation_json       TEXT,
    attested_by            TEXT,
    attested_at            TEXT,
    reminded_on            TEXT
);
