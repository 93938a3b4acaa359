-- An account made with a one-time password (by an administrator or at bootstrap) must choose
-- its own before it may do anything but change it.
ALTER TABLE users ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
