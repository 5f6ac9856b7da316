-- The media service (services/media), continued: files a channel's posts carry, and releasing a file once no
-- message carries it any more. Never edit this file once applied: add a new one.

-- A channel whose members (now and later) may read a file: one row per channel, not one per subscriber. The media
-- service asks the message service whether a user is a member (files.memberOf) when they are not a reader by name.
CREATE TABLE media_channel_readers (
    file_id    bigint NOT NULL REFERENCES media_files ON DELETE CASCADE,
    channel_id bigint NOT NULL,
    PRIMARY KEY (file_id, channel_id)
);

-- held_at: the last time a message (sendMedia, a forward) named the file; NULL for a file only ever stored with
-- messages.uploadMedia (or by a component that does not ask for release), which is never released for want of a
-- message. The release (services/media/release.py) considers a held file once held_at is older than its grace
-- (a send in progress has written its message by then, or failed) and asks the message service whether any
-- message still carries it; checked_at: when it last asked, so every held file is asked about in turn.
ALTER TABLE media_files ADD COLUMN held_at double precision;
ALTER TABLE media_files ADD COLUMN checked_at double precision NOT NULL DEFAULT 0;
CREATE INDEX media_files_release ON media_files (checked_at) WHERE held_at IS NOT NULL;
