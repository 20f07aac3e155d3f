-- Signing in through a trusted external issuer (VNeID, a hospital's own
-- identity provider): who each issuer's subject is on the platform, and the
-- sign-ins under way (kept in the database so any node can finish one).

CREATE TABLE external_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject),
    -- One subject per account and issuer: a second one cannot take it over.
    UNIQUE (issuer, user_id)
);

CREATE INDEX external_identities_user ON external_identities (user_id);

CREATE TABLE external_logins (
    -- SHA-256 of the `state` sent to the issuer.
    state_hash TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    -- The console's authorization request to continue, as JSON.
    request TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Set when the callback takes it: a state is good once.
    used_at BIGINT
);

CREATE INDEX external_logins_expiry ON external_logins (expires_at);
