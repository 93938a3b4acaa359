-- The access log: append-only and hash-chained. See src/audit for the canonical encoding.
CREATE TABLE access_log (
    seq         INTEGER PRIMARY KEY,
    at          TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    reason      TEXT,
    client_addr TEXT,
    user_agent  TEXT,
    bytes       INTEGER,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE
);

CREATE INDEX access_log_action_at ON access_log (action, at);

-- The database itself refuses to change or remove a record, whoever asks.
CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only: UPDATE refused');
END;

CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only: DELETE refused');
END;
