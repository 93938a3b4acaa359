-- The access log as two append-only tables: `access_events` is the queue every change writes
-- its event into, in the change's own transaction; `access_log` is where the one sequencer
-- gives committed events their positions, the hash chain and the RFC 6962 Merkle tree (each
-- record keeps the tree hashes it completed, in the tlog stored-hash layout: its leaf hash, then
-- one hash per subtree it closed), signed into checkpoints.
-- The records of schema 1 to 9 stay, frozen, as `access_log_v1`; the new chain starts from
-- their last hash.
ALTER TABLE access_log RENAME TO access_log_v1;

CREATE TRIGGER access_log_v1_no_insert BEFORE INSERT ON access_log_v1
BEGIN
    SELECT RAISE(ABORT, 'access_log_v1 is frozen: INSERT refused');
END;

CREATE TABLE access_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT    NOT NULL,
    actor_kind    TEXT    NOT NULL,
    actor_user    TEXT,
    actor_org     TEXT,
    action        TEXT    NOT NULL,
    target_kind   TEXT    NOT NULL,
    target_id     TEXT,
    release_id    TEXT,
    history_entry INTEGER,
    dua_number    TEXT,
    file_id       TEXT,
    outcome       TEXT    NOT NULL,
    reason        TEXT,
    client_addr   TEXT,
    user_agent    TEXT,
    bytes         INTEGER
);

CREATE INDEX access_events_at ON access_events (at);
CREATE INDEX access_events_release ON access_events (release_id, id);
CREATE INDEX access_events_dua ON access_events (dua_number, id);
CREATE INDEX access_events_user ON access_events (actor_user, id);
CREATE INDEX access_events_org ON access_events (actor_org, id);
CREATE INDEX access_events_action ON access_events (action, id);
CREATE INDEX access_events_outcome ON access_events (outcome, id);
CREATE INDEX access_events_file ON access_events (file_id, id);

CREATE TABLE access_log (
    seq           INTEGER PRIMARY KEY,
    event_id      INTEGER NOT NULL UNIQUE REFERENCES access_events (id),
    integrated_at TEXT    NOT NULL,
    prev_hash     TEXT    NOT NULL,
    hash          TEXT    NOT NULL,
    tree_hashes   TEXT    NOT NULL
);

CREATE TABLE access_log_checkpoints (
    size        INTEGER PRIMARY KEY,
    root        TEXT    NOT NULL,
    note        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);

-- Nothing may change, remove or replace a row of the three tables (see migration 0007 for why
-- a replacing insert needs its own trigger).

CREATE TRIGGER access_events_v2_no_update BEFORE UPDATE ON access_events
BEGIN
    SELECT RAISE(ABORT, 'access_events is append-only: UPDATE refused');
END;

CREATE TRIGGER access_events_v2_no_delete BEFORE DELETE ON access_events
BEGIN
    SELECT RAISE(ABORT, 'access_events is append-only: DELETE refused');
END;

CREATE TRIGGER access_events_v2_no_replace BEFORE INSERT ON access_events
WHEN EXISTS (SELECT 1 FROM access_events WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'access_events is append-only: an insert may not replace a row');
END;

CREATE TRIGGER access_log_v2_no_update BEFORE UPDATE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only: UPDATE refused');
END;

CREATE TRIGGER access_log_v2_no_delete BEFORE DELETE ON access_log
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only: DELETE refused');
END;

CREATE TRIGGER access_log_v2_no_replace BEFORE INSERT ON access_log
WHEN EXISTS (SELECT 1 FROM access_log WHERE seq = NEW.seq OR event_id = NEW.event_id)
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only: an insert may not replace a row');
END;

CREATE TRIGGER access_log_checkpoints_v2_no_update BEFORE UPDATE ON access_log_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'access_log_checkpoints is append-only: UPDATE refused');
END;

CREATE TRIGGER access_log_checkpoints_v2_no_delete BEFORE DELETE ON access_log_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'access_log_checkpoints is append-only: DELETE refused');
END;

CREATE TRIGGER access_log_checkpoints_v2_no_replace BEFORE INSERT ON access_log_checkpoints
WHEN EXISTS (SELECT 1 FROM access_log_checkpoints WHERE size = NEW.size)
BEGIN
    SELECT RAISE(ABORT, 'access_log_checkpoints is append-only: an insert may not replace a row');
END;
