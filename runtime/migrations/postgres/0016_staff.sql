-- Staff, invitations and service clients (docs/identity.md): accounts get a
-- status, a practising licence, specialties, several roles, contact details
-- and a last sign-in; the role `pharmacist` joins the directory.
ALTER TABLE identity_users DROP CONSTRAINT identity_users_role_check;
ALTER TABLE identity_users ADD CONSTRAINT identity_users_role_check
    CHECK (role IN ('citizen', 'practitioner', 'hospital-admin', 'vendor-user', 'reviewer', 'operator', 'assessor', 'pharmacist'));
ALTER TABLE identity_users ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'suspended'));
-- Practising licence (giấy phép hành nghề, or an older chứng chỉ hành nghề).
ALTER TABLE identity_users ADD COLUMN licence_number TEXT UNIQUE;
-- Specialty codes (runtime/data/specialties.csv), space-separated with a
-- space at each end so one code matches with LIKE '% code %'.
ALTER TABLE identity_users ADD COLUMN specialties TEXT;
-- Every role of the account, alike; NULL: only `role`.
ALTER TABLE identity_users ADD COLUMN roles TEXT;
-- Staff: their citizen ID (CCCD), kept apart from a citizen account's.
ALTER TABLE identity_users ADD COLUMN staff_national_id TEXT UNIQUE;
ALTER TABLE identity_users ADD COLUMN email TEXT;
ALTER TABLE identity_users ADD COLUMN phone TEXT;
-- Vendor users: 1 when they may invite colleagues of their vendor.
ALTER TABLE identity_users ADD COLUMN vendor_admin BIGINT NOT NULL DEFAULT 0;
ALTER TABLE identity_users ADD COLUMN last_login_at BIGINT;
ALTER TABLE identity_users ADD COLUMN updated_at BIGINT;
CREATE INDEX identity_users_vendor ON identity_users (vendor_id);

-- One-time links to set a first password: only the token's SHA-256 is kept.
CREATE TABLE identity_invitations (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES identity_users (id),
    purpose TEXT NOT NULL CHECK (purpose IN ('staff', 'vendor-user', 'operator', 'reviewer')),
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX identity_invitations_user ON identity_invitations (user_id);

-- Service clients: what they do, their scope, secret rotation with an
-- overlap, revocation and last use.
ALTER TABLE identity_clients ADD COLUMN system_kind TEXT;
ALTER TABLE identity_clients ADD COLUMN scope TEXT;
ALTER TABLE identity_clients ADD COLUMN previous_secret_hash TEXT;
ALTER TABLE identity_clients ADD COLUMN previous_secret_expires_at BIGINT;
ALTER TABLE identity_clients ADD COLUMN rotated_at BIGINT;
ALTER TABLE identity_clients ADD COLUMN revoked_at BIGINT;
ALTER TABLE identity_clients ADD COLUMN last_used_at BIGINT;
ALTER TABLE identity_clients ADD COLUMN created_by TEXT;
CREATE INDEX identity_clients_hospital ON identity_clients (hospital_id);
