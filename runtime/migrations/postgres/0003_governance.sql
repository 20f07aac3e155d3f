-- Plugin governance: vendor keys, submitted versions, review decisions,
-- activations, rollouts, and the hash-chained audit trail.
CREATE TABLE vendor_keys (
    key_id TEXT PRIMARY KEY,
    vendor_id TEXT NOT NULL,
    public_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE plugin_versions (
    id TEXT PRIMARY KEY,
    plugin_id TEXT NOT NULL,
    version TEXT NOT NULL,
    vendor_id TEXT NOT NULL,
    manifest TEXT NOT NULL,
    component BYTEA NOT NULL,
    component_digest TEXT NOT NULL,
    signature TEXT NOT NULL,
    checks TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('submitted', 'approved', 'rejected', 'revoked')),
    granted TEXT,
    submitted_by TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    UNIQUE (plugin_id, version)
);

CREATE TABLE review_decisions (
    id TEXT PRIMARY KEY,
    version_id TEXT NOT NULL REFERENCES plugin_versions (id),
    decision TEXT NOT NULL CHECK (decision IN ('approve', 'reject', 'revoke')),
    reviewer TEXT NOT NULL,
    reason TEXT NOT NULL,
    granted TEXT,
    decided_at BIGINT NOT NULL,
    platform_key_id TEXT NOT NULL,
    platform_signature TEXT NOT NULL
);

CREATE TABLE activations (
    hospital_id TEXT NOT NULL REFERENCES hospitals (id),
    plugin_id TEXT NOT NULL,
    version_id TEXT NOT NULL REFERENCES plugin_versions (id),
    config TEXT NOT NULL,
    secrets BYTEA,
    state TEXT NOT NULL CHECK (state IN ('active', 'suspended')),
    mandatory BIGINT NOT NULL DEFAULT 0,
    activated_by TEXT NOT NULL,
    activated_at BIGINT NOT NULL,
    PRIMARY KEY (hospital_id, plugin_id)
);

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    hospital_id TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

-- The chain's head, updated with every append, so deleting the newest
-- entries is detected too.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

-- Bumped by every governance change; every node polls it and drops its
-- caches when it moves, so a revocation reaches all nodes within a second.
CREATE TABLE governance_epoch (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);
INSERT INTO governance_epoch (id, epoch) VALUES (1, 0);
