-- Notifications plugins send to people (`notify` capability); each
-- recipient reads their own, in `seq` order, and resumes a stream after the
-- last `seq` seen.

CREATE TABLE notifications (
    seq BIGSERIAL PRIMARY KEY,
    recipient TEXT NOT NULL,
    hospital_id TEXT NOT NULL,
    plugin_id TEXT NOT NULL,
    -- Who was calling the plugin when it sent this.
    sender TEXT NOT NULL,
    topic TEXT NOT NULL,
    title TEXT NOT NULL,
    data TEXT NOT NULL,
    link TEXT,
    created_at BIGINT NOT NULL,
    read_at BIGINT
);
CREATE INDEX notifications_recipient ON notifications (recipient, seq);
