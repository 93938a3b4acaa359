-- The access log: append-only and hash-chained. See src/audit for the canonical encoding.
CREATE TABLE access_log (
    seq         BIGINT  PRIMARY KEY,
    at          TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    reason      TEXT,
    client_addr TEXT,
    user_agent  TEXT,
    bytes       BIGINT,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL UNIQUE
);

CREATE INDEX access_log_action_at ON access_log (action, at);

-- The database itself refuses to change or remove a record, whoever asks.
CREATE FUNCTION access_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_log is append-only: % refused', TG_OP;
END;
$$;

CREATE TRIGGER access_log_no_update_delete BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_refuse_change();

CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION access_log_refuse_change();
