-- Pages (`notify.page`): a message re-sent and escalated by the host until
-- the plugin resolves it, so paging needs no call of the plugin. One open
-- page per (hospital, plugin, key); every node's sweeper claims each step
-- by moving `next_at` (compare-and-swap), so a step is sent once.

CREATE TABLE notification_pages (
    hospital_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    page_key TEXT NOT NULL,
    -- Who was calling the plugin when it paged; the sender of every send.
    sender TEXT NOT NULL,
    topic TEXT NOT NULL,
    title TEXT NOT NULL,
    data TEXT NOT NULL,
    link TEXT,
    -- JSON: [{"recipients": [...], "after_ms": N}, ...], first at 0.
    stages TEXT NOT NULL,
    resend_ms BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    -- The last stage paged (0-based) and how many sends so far.
    stage BIGINT NOT NULL,
    sends BIGINT NOT NULL,
    -- When the next re-send or escalation is due; NULL when none is left.
    next_at BIGINT,
    resolved_at BIGINT,
    PRIMARY KEY (hospital_id, plugin_id, page_key)
);
CREATE INDEX notification_pages_due ON notification_pages (next_at);
