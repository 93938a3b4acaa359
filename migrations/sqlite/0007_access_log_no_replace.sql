-- `INSERT OR REPLACE` (and `REPLACE`) resolves a key conflict by deleting the old record, which
-- does not fire the DELETE trigger unless recursive triggers are on: an insert that would meet
-- an existing position or hash is refused before the conflict is resolved.
CREATE TRIGGER access_log_no_replace BEFORE INSERT ON access_log
WHEN EXISTS (SELECT 1 FROM access_log WHERE seq = NEW.seq OR hash = NEW.hash)
BEGIN
    SELECT RAISE(ABORT, 'access_log is append-only: an insert may not replace a record');
END;
