-- Channels (broadcast channels and supergroups) on the channel's own shard (shard_for_chat(id)): each post is
-- stored once, with the channel's own message ids and its own pts (core.telegram.org/api/updates: channels have
-- their own update sequence). No subscriber gets a copy or an update row per post; a subscriber's dialog row (on
-- the subscriber's shard, peer_type 3) keeps only their read position. Never edit once applied: add a new file.

CREATE TABLE channels (
    shard              smallint NOT NULL,
    id                 bigint NOT NULL,
    access_hash        bigint NOT NULL,              -- inputChannel carries it: knowing it lets a client name the channel
    title              text NOT NULL CHECK (title <> '' AND length(title) <= 128),
    about              text NOT NULL DEFAULT '',
    creator_id         bigint NOT NULL,
    date               integer NOT NULL,
    broadcast          boolean NOT NULL,             -- true: only admins post; false: a supergroup, members post
    pts                integer NOT NULL DEFAULT 0,   -- the newest pts in the channel's update log
    last_msg_id        integer NOT NULL DEFAULT 0,   -- the newest message id given out
    participants_count integer NOT NULL DEFAULT 0,
    PRIMARY KEY (shard, id)
);

CREATE TABLE channel_members (
    shard      smallint NOT NULL,
    channel_id bigint NOT NULL,
    user_id    bigint NOT NULL,
    role       text NOT NULL CHECK (role IN ('creator', 'admin', 'member')),
    date       integer NOT NULL,                     -- when they joined
    PRIMARY KEY (shard, channel_id, user_id)
);

CREATE TABLE channel_messages (
    shard      smallint NOT NULL,
    channel_id bigint NOT NULL,
    id         integer NOT NULL,
    from_id    bigint NOT NULL,                      -- who posted (shown in supergroups; broadcast posts are the channel's)
    date       integer NOT NULL,
    message    text NOT NULL,
    entities   bytea,
    media      bytea,
    action     bytea,                                -- MessageAction as TL for a service message, else NULL
    edit_date  integer,
    views      integer NOT NULL DEFAULT 0,
    random_id  bigint,                               -- the poster's random_id: resends dedup on it
    pts        integer NOT NULL,                     -- the channel's pts after this post
    PRIMARY KEY (shard, channel_id, id)
);
CREATE UNIQUE INDEX channel_messages_random_id ON channel_messages (shard, channel_id, from_id, random_id)
    WHERE random_id IS NOT NULL;

CREATE TABLE channel_update_log (
    shard      smallint NOT NULL,
    channel_id bigint NOT NULL,
    pts        integer NOT NULL,
    pts_count  integer NOT NULL CHECK (pts_count > 0),
    date       integer NOT NULL,
    kind       text NOT NULL,
    body       bytea NOT NULL,
    PRIMARY KEY (shard, channel_id, pts)
);
