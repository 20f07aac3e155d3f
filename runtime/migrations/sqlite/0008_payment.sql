-- Payments: a double-entry ledger in integer đồng, payment intents, refunds
-- and the outbox of settlement events. Times in milliseconds since the epoch.

-- One account per (kind, owner), e.g. `merchant:hospital:bv-cho-ray`.
-- `posted` and `pending` cache the sums of the account's postings by the
-- state of their transfer; they change only in the transaction that
-- inserts or resolves those postings.
CREATE TABLE ledger_accounts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    posted BIGINT NOT NULL DEFAULT 0,
    pending BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- A movement: a balanced set of postings, pending until posted or voided
-- (two-phase), or posted at once.
CREATE TABLE ledger_transfers (
    id TEXT PRIMARY KEY,
    intent_id TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    created_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX ledger_transfers_intent ON ledger_transfers (intent_id);

-- Signed amounts in đồng: credits positive, debits negative; each
-- transfer's postings sum to zero.
CREATE TABLE ledger_postings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transfer_id TEXT NOT NULL REFERENCES ledger_transfers (id),
    account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
    amount BIGINT NOT NULL CHECK (amount <> 0)
);
CREATE INDEX ledger_postings_account ON ledger_postings (account_id);
CREATE INDEX ledger_postings_transfer ON ledger_postings (transfer_id);

-- A payment intent of one (hospital, plugin) pair. `request_hash` is the
-- digest of the create parameters: the same idempotency key with other
-- parameters is a conflict. Shares are basis points of the activation's
-- revenue-share terms when the intent was created.
CREATE TABLE payment_intents (
    id TEXT PRIMARY KEY,
    hospital_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL CHECK (currency = 'VND'),
    payer TEXT NOT NULL,
    merchant_kind TEXT NOT NULL CHECK (merchant_kind IN ('hospital', 'vendor')),
    merchant_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL,
    gateway TEXT NOT NULL,
    platform_fee_bps BIGINT NOT NULL,
    hospital_share_bps BIGINT NOT NULL,
    captured BIGINT NOT NULL DEFAULT 0,
    refunded BIGINT NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= captured),
    pending_transfer TEXT,
    gateway_ref TEXT,
    -- Where the payer's browser goes after the gateway (a path of the plugin).
    return_path TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    UNIQUE (hospital_id, plugin_id, idempotency_key)
);
CREATE INDEX payment_intents_state ON payment_intents (state, expires_at);

CREATE TABLE payment_refunds (
    id TEXT PRIMARY KEY,
    intent_id TEXT NOT NULL REFERENCES payment_intents (id),
    idempotency_key TEXT NOT NULL,
    amount BIGINT NOT NULL CHECK (amount > 0),
    created_at BIGINT NOT NULL,
    UNIQUE (intent_id, idempotency_key)
);

-- Settlement events, written in the transaction that changed the intent;
-- the dispatcher delivers each to its plugin and sets `delivered_at`.
CREATE TABLE payment_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    hospital_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    intent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    delivered_at BIGINT
);
CREATE INDEX payment_outbox_due ON payment_outbox (delivered_at, next_attempt_at);
