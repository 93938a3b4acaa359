-- Publication reviews (seed 001 section 4.3 J): each table a recipient submitted before
-- publishing, with what Steward found. The upload itself (counts only) is kept encrypted to
-- the server's master identity; the findings name cells by their categories.
CREATE TABLE publication_reviews (
    id             TEXT   PRIMARY KEY,
    release_id     TEXT   NOT NULL REFERENCES releases (id),
    submitted_by   TEXT   NOT NULL REFERENCES users (id),
    submitted_at   TEXT   NOT NULL,
    threshold      BIGINT NOT NULL,
    passes         BIGINT NOT NULL,
    findings_json  TEXT   NOT NULL,
    upload_sealed  TEXT   NOT NULL,
    upload_sha256  TEXT   NOT NULL
);

CREATE INDEX publication_reviews_release ON publication_reviews (release_id, submitted_at);
