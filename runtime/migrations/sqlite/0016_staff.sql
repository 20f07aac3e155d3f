-- Staff, invitations and service clients (docs/identity.md): accounts get a
-- status, a practising licence, specialties, several roles, contact details
-- and a last sign-in; the role `pharmacist` joins the directory. SQLite
-- cannot change a CHECK constraint, so identity_users is rebuilt (nothing
-- references it), keeping the folded search columns of 0013.
CREATE TABLE identity_users_new (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    -- The primary role; `roles` holds them all.
    role TEXT NOT NULL CHECK (role IN ('citizen', 'practitioner', 'hospital-admin', 'vendor-user', 'reviewer', 'operator', 'assessor', 'pharmacist')),
    hospital_id TEXT REFERENCES hospitals (id),
    vendor_id TEXT REFERENCES vendors (id),
    national_id TEXT UNIQUE,
    health_id TEXT UNIQUE,
    specialty TEXT,
    title TEXT,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    name_folded TEXT,
    specialty_folded TEXT,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    -- Practising licence (giấy phép hành nghề, or an older chứng chỉ hành nghề).
    licence_number TEXT UNIQUE,
    -- Specialty codes (runtime/data/specialties.csv), space-separated with a
    -- space at each end so one code matches with LIKE '% code %'.
    specialties TEXT,
    -- Every role of the account, alike; NULL: only `role`.
    roles TEXT,
    -- Staff: their citizen ID (CCCD), kept apart from a citizen account's.
    staff_national_id TEXT UNIQUE,
    email TEXT,
    phone TEXT,
    -- Vendor users: 1 when they may invite colleagues of their vendor.
    vendor_admin BIGINT NOT NULL DEFAULT 0,
    last_login_at BIGINT,
    updated_at BIGINT
);
INSERT INTO identity_users_new (id, username, display_name, role, hospital_id, vendor_id, national_id,
    health_id, specialty, title, password_hash, created_at, name_folded, specialty_folded)
SELECT id, username, display_name, role, hospital_id, vendor_id, national_id,
    health_id, specialty, title, password_hash, created_at, name_folded, specialty_folded FROM identity_users;
DROP TABLE identity_users;
ALTER TABLE identity_users_new RENAME TO identity_users;
CREATE INDEX identity_users_hospital ON identity_users (hospital_id);
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
