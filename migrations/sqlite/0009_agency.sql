-- Staff roles (IT staff, executive director, privacy officer, administrator) act only for the
-- agency: the organization marked here. Existing installs mark the organizations of their
-- administrators, which is where `steward admin bootstrap` put the first one.
ALTER TABLE organizations ADD COLUMN agency BIGINT NOT NULL DEFAULT 0;
UPDATE organizations SET agency = 1 WHERE id IN (
    SELECT u.org_id FROM users u JOIN user_roles r ON r.user_id = u.id WHERE r.role = 'admin'
);
