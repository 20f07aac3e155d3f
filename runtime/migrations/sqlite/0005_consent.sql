-- Cross-hospital access to health records: a citizen's consents, the
-- consultations between two hospitals about a patient, the log of who read
-- a citizen's records, and the idempotency keys of records transactions.
--
-- Patients are matched across hospitals by their citizen ID (CCCD) or
-- social-insurance health ID, the identifiers of their Patient resources.

CREATE TABLE record_consents (
    id TEXT PRIMARY KEY,
    -- The citizen who granted it (token subject) and their identifiers.
    citizen_subject TEXT NOT NULL,
    national_id TEXT,
    health_id TEXT,
    -- Who may read: the staff of this hospital.
    grantee_hospital TEXT NOT NULL REFERENCES hospitals (id),
    -- Whose records: this hospital's, or every hospital's when NULL.
    source_hospital TEXT REFERENCES hospitals (id),
    -- JSON list of purposes of use: treatment, payment, public-health.
    purposes TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX record_consents_grantee ON record_consents (grantee_hospital, status);
CREATE INDEX record_consents_citizen ON record_consents (citizen_subject);

CREATE TABLE consultations (
    id TEXT PRIMARY KEY,
    -- The lower-level hospital asking for support and the upper-level one giving it.
    requesting_hospital TEXT NOT NULL REFERENCES hospitals (id),
    host_hospital TEXT NOT NULL REFERENCES hospitals (id),
    patient_national_id TEXT,
    patient_health_id TEXT,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('requested', 'active', 'declined', 'ended')),
    requested_by TEXT NOT NULL,
    decided_by TEXT,
    created_at BIGINT NOT NULL,
    accepted_at BIGINT,
    ended_at BIGINT
);
CREATE INDEX consultations_hospitals ON consultations (status, requesting_hospital, host_hospital);

-- One row per (request, patient) read of a citizen's records by someone
-- else: what the citizen sees as "who read my record".
CREATE TABLE record_access_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    national_id TEXT,
    health_id TEXT,
    reader_subject TEXT NOT NULL,
    reader_name TEXT,
    reader_hospital TEXT,
    owner_hospital TEXT NOT NULL,
    plugin_id TEXT,
    interaction TEXT NOT NULL,
    targets TEXT NOT NULL,
    purpose TEXT NOT NULL,
    basis TEXT NOT NULL
);
CREATE INDEX record_access_log_national ON record_access_log (national_id, at);
CREATE INDEX record_access_log_health ON record_access_log (health_id, at);

CREATE TABLE records_idempotency (
    hospital_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (hospital_id, plugin_id, idempotency_key)
);
