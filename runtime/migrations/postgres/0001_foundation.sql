-- Hospitals of the network and per-(hospital, plugin) key-value storage.
CREATE TABLE hospitals (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tier TEXT NOT NULL CHECK (tier IN ('central', 'provincial', 'district', 'commune')),
    province TEXT NOT NULL
);

CREATE TABLE kv_entries (
    hospital_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    -- Byte order, as in SQLite, so prefix listing and paging agree.
    key TEXT COLLATE "C" NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (hospital_id, plugin_id, key)
);

CREATE TABLE kv_usage (
    hospital_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    used_bytes BIGINT NOT NULL,
    PRIMARY KEY (hospital_id, plugin_id)
);
