-- Video consultation rooms: the room, who is invited with which role, and
-- the log of who was in the room when. Admission (the waiting room) is a
-- column of the invitation, so every node sees the same state.

CREATE TABLE video_rooms (
    id TEXT PRIMARY KEY,
    -- The upper-level hospital running the room and the one asking for support.
    host_hospital TEXT NOT NULL REFERENCES hospitals (id),
    requesting_hospital TEXT REFERENCES hospitals (id),
    purpose TEXT NOT NULL,
    max_participants BIGINT NOT NULL,
    scheduled_at BIGINT,
    status TEXT NOT NULL CHECK (status IN ('scheduled', 'open', 'ended')),
    -- The consultation (api/consent.rs) this room serves, if any.
    consultation_id TEXT REFERENCES consultations (id),
    created_by TEXT NOT NULL,
    -- Set when a plugin created the room through the `video` capability:
    -- only that plugin at the host hospital may act on it.
    created_by_plugin TEXT,
    created_at BIGINT NOT NULL,
    opened_at BIGINT,
    ended_at BIGINT,
    ended_by TEXT
);
CREATE INDEX video_rooms_host ON video_rooms (host_hospital, status);

CREATE TABLE video_invitations (
    -- The participant id of the join token.
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES video_rooms (id),
    subject TEXT NOT NULL,
    display_name TEXT NOT NULL,
    hospital_id TEXT,
    role TEXT NOT NULL CHECK (role IN ('chair', 'presenter', 'participant', 'observer')),
    invited_by TEXT NOT NULL,
    invited_at BIGINT NOT NULL,
    -- Set when a chair let the participant out of the waiting room.
    admitted_at BIGINT,
    admitted_by TEXT,
    removed_at BIGINT,
    removed_by TEXT,
    UNIQUE (room_id, subject)
);

-- One row per connection of a participant to the room's signalling.
CREATE TABLE video_participations (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES video_rooms (id),
    invitation_id TEXT NOT NULL REFERENCES video_invitations (id),
    joined_at BIGINT NOT NULL,
    admitted_at BIGINT,
    admitted_by TEXT,
    left_at BIGINT,
    -- left, disconnected, removed, room-ended
    left_reason TEXT
);
CREATE INDEX video_participations_room ON video_participations (room_id, joined_at);
