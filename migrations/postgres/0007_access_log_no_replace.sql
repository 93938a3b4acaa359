-- PostgreSQL has no REPLACE: `INSERT ... ON CONFLICT DO UPDATE` is an UPDATE, which the trigger
-- of migration 0001 refuses, and a plain conflicting INSERT fails on the unique keys. The
-- version is kept in step with SQLite's, where the same guarantee needs a trigger.
SELECT 1;
