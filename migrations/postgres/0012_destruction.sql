-- Destruction demands: one per release, from the director's demand (or the DUA's end) to the
-- signed certificate and the recipient's attestation. The erase job fills the columns in
-- order: the plan (what exists, recorded before anything is erased), the erase of the wrapped
-- release identity (with the access log's checkpoint at that moment), the deletion of every
-- object, the certificate.
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
    deleted_at             TEXT,
    certificate_json       TEXT,
    certificate_signature  TEXT,
    attestation_json       TEXT,
    attested_by            TEXT,
    attested_at            TEXT,
    reminded_on            TEXT
);

-- Releases moved to `destruction_demanded` before demands were recorded get their demand (so
-- the erase job runs for them) and the release-wide revocation a demand makes, which takes the
-- release's id. The deadline is the demand's day plus the DUA's destruction days (if any).
INSERT INTO revocations (id, scope_kind, scope_id, reason, created_by, created_at)
SELECT r.id, 'release', r.id, 'destruction demanded', h.actor, h.at
FROM releases r
JOIN release_history h ON h.release_id = r.id AND h.to_status = 'destruction_demanded'
    AND h.entry = (SELECT MAX(entry) FROM release_history x
                   WHERE x.release_id = r.id AND x.to_status = 'destruction_demanded')
WHERE r.status = 'destruction_demanded';

INSERT INTO destruction_demands (release_id, demanded_by, demanded_at, deadline, reason,
    revocation_id)
SELECT r.id, h.actor, h.at, (substr(h.at, 1, 10)::date + COALESCE(d.destruction_days, 0)::int)::text,
    'demanded before destruction demands were recorded', r.id
FROM releases r
JOIN release_history h ON h.release_id = r.id AND h.to_status = 'destruction_demanded'
    AND h.entry = (SELECT MAX(entry) FROM release_history x
                   WHERE x.release_id = r.id AND x.to_status = 'destruction_demanded')
LEFT JOIN duas d ON d.release_id = r.id AND d.version = r.dua_version
WHERE r.status = 'destruction_demanded';
