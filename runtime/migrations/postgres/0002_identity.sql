-- Identity: the built-in OpenID Connect provider's signing keys, clients,
-- codes and refresh tokens, and the directory of people and organisations.
CREATE TABLE identity_keys (
    kid TEXT PRIMARY KEY,
    -- PKCS#8 of the P-256 private key, base64.
    private_pkcs8 TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- When it stopped signing; NULL while it is the active key.
    retired_at BIGINT
);

CREATE TABLE vendors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE identity_users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('citizen', 'practitioner', 'hospital-admin', 'vendor-user', 'reviewer', 'operator')),
    hospital_id TEXT REFERENCES hospitals (id),
    vendor_id TEXT REFERENCES vendors (id),
    national_id TEXT UNIQUE,
    health_id TEXT UNIQUE,
    specialty TEXT,
    title TEXT,
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE identity_clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('public', 'confidential')),
    secret_hash TEXT,
    -- Allowed redirect URIs, one per line.
    redirect_uris TEXT NOT NULL,
    -- A confidential client acting for a hospital (client credentials).
    hospital_id TEXT REFERENCES hospitals (id),
    created_at BIGINT NOT NULL
);

CREATE TABLE identity_codes (
    code_hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    user_id TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE identity_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Set when used (rotated) or revoked; a used token presented again
    -- revokes its whole family.
    used_at BIGINT,
    revoked_at BIGINT
);

CREATE INDEX identity_refresh_tokens_family ON identity_refresh_tokens (family_id);
CREATE INDEX identity_users_hospital ON identity_users (hospital_id);
