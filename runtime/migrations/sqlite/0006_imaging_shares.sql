-- Imaging shares for the social-insurance (BHYT) assessment: a hospital's
-- signed FHIR document (ImagingStudy, DiagnosticReport, Patient with the
-- health ID) made readable to one assessor for one claim.
--
-- The role `assessor` joins the directory. SQLite cannot change a CHECK
-- constraint, so identity_users is rebuilt (nothing references it).
CREATE TABLE identity_users_new (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('citizen', 'practitioner', 'hospital-admin', 'vendor-user', 'reviewer', 'operator', 'assessor')),
    hospital_id TEXT REFERENCES hospitals (id),
    vendor_id TEXT REFERENCES vendors (id),
    national_id TEXT UNIQUE,
    health_id TEXT UNIQUE,
    specialty TEXT,
    title TEXT,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO identity_users_new (id, username, display_name, role, hospital_id, vendor_id, national_id,
    health_id, specialty, title, password_hash, created_at)
SELECT id, username, display_name, role, hospital_id, vendor_id, national_id,
    health_id, specialty, title, password_hash, created_at FROM identity_users;
DROP TABLE identity_users;
ALTER TABLE identity_users_new RENAME TO identity_users;
CREATE INDEX identity_users_hospital ON identity_users (hospital_id);

-- Times in milliseconds since the epoch. `document` is the signed Bundle as
-- served: it never changes after it is written.
CREATE TABLE imaging_shares (
    id TEXT PRIMARY KEY,
    hospital_id TEXT NOT NULL REFERENCES hospitals (id),
    -- The BHYT claim (hồ sơ giám định) number the share is for.
    claim_id TEXT NOT NULL,
    -- The subject of the assessor who may read it.
    assessor TEXT NOT NULL,
    patient_health_id TEXT NOT NULL,
    document TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_by TEXT
);
CREATE INDEX imaging_shares_assessor ON imaging_shares (assessor, created_at);
CREATE INDEX imaging_shares_claim ON imaging_shares (hospital_id, claim_id);
