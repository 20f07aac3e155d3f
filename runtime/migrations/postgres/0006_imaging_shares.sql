-- Imaging shares for the social-insurance (BHYT) assessment: a hospital's
-- signed FHIR document (ImagingStudy, DiagnosticReport, Patient with the
-- health ID) made readable to one assessor for one claim.

-- The role `assessor` joins the directory.
ALTER TABLE identity_users DROP CONSTRAINT identity_users_role_check;
ALTER TABLE identity_users ADD CONSTRAINT identity_users_role_check
    CHECK (role IN ('citizen', 'practitioner', 'hospital-admin', 'vendor-user', 'reviewer', 'operator', 'assessor'));

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
