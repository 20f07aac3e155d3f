-- Signed checkpoints of the audit chain's head (docs/security.md): a key
-- derived from the master key signs (seq, hash, at), so rebuilding the
-- chain after deleting or editing an entry no longer matches them. Kept
-- apart from the entries and exportable (`runtime audit checkpoints export`).
CREATE TABLE audit_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL
);
