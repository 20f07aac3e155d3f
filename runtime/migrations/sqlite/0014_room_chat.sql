-- The chat of a video room, kept with the room (and so with the
-- consultation it belongs to): every line the relay passed on, in order.

CREATE TABLE video_chat (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    -- When the relay received it, epoch milliseconds.
    at BIGINT NOT NULL
);

CREATE INDEX video_chat_room ON video_chat (room_id, at);
