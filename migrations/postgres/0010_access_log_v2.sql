-- The access log as two append-only tables: `access_events` is the queue every change writes
-- its event into, in the change's own transaction; `access_log` is where the one sequencer
-- gives committed events their positions, the hash chain and the RFC 6962 Merkle tree (each
-- record keeps the tree hashes it completed, in the tlog stored-hash layout: its leaf hash, then
-- one hash per subtree it closed), signed into checkpoints.
-- The records of schema 1 to 9 stay, frozen, as `access_log_v1`; the new chain starts from
-- their last hash.
ALTER TABLE access_log RENAME TO access_log_v1;

CREATE FUNCTION access_log_v1_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_log_v1 is frozen: % refused', TG_OP;
END;
$$;

CREATE TRIGGER access_log_v1_no_insert BEFORE INSERT ON access_log_v1
    FOR EACH ROW EXECUTE FUNCTION access_log_v1_frozen();

CREATE TABLE access_events (
    id            BIGSERIAL PRIMARY KEY,
    at            TEXT   NOT NULL,
    actor_kind    TEXT   NOT NULL,
    actor_user    TEXT,
    actor_org     TEXT,
    action        TEXT   NOT NULL,
    target_kind   TEXT   NOT NULL,
    target_id     TEXT,
    release_id    TEXT,
    history_entry BIGINT,
    dua_number    TEXT,
    file_id       TEXT,
    outcome       TEXT   NOT NULL,
    reason        TEXT,
    client_addr   TEXT,
    user_agent    TEXT,
    bytes         BIGINT
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
    seq           BIGINT PRIMARY KEY,
    event_id      BIGINT NOT NULL UNIQUE REFERENCES access_events (id),
    integrated_at TEXT   NOT NULL,
    prev_hash     TEXT   NOT NULL,
    hash          TEXT   NOT NULL,
    tree_hashes   TEXT   NOT NULL
);

CREATE TABLE access_log_checkpoints (
    size        BIGINT PRIMARY KEY,
    root        TEXT   NOT NULL,
    note        TEXT   NOT NULL,
    created_at  TEXT   NOT NULL
);

CREATE TRIGGER access_events_no_update_delete BEFORE UPDATE OR DELETE ON access_events
    FOR EACH ROW EXECUTE FUNCTION access_log_refuse_change();
CREATE TRIGGER access_events_no_truncate BEFORE TRUNCATE ON access_events
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_refuse_change();
CREATE TRIGGER access_log_no_update_delete BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_refuse_change();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_refuse_change();
CREATE TRIGGER access_log_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON access_log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION access_log_refuse_change();
CREATE TRIGGER access_log_checkpoints_no_truncate BEFORE TRUNCATE ON access_log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_refuse_change();
