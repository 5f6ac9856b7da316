-- Basic groups on the group's own shard (shard_for_chat(id)): the group, its members, and each message once in
-- the group's own id sequence. Every member also gets a copy in their box (peer_type 2), delivered through the
-- outbox as for a private chat, with their own message id and pts: that is how basic groups work on Telegram
-- (core.telegram.org/api/channel: "basic groups ... behave like private chats"). Never edit once applied.

CREATE TABLE chats (
    shard       smallint NOT NULL,
    id          bigint NOT NULL,
    title       text NOT NULL CHECK (title <> '' AND length(title) <= 128),
    creator_id  bigint NOT NULL,
    date        integer NOT NULL,
    version     integer NOT NULL DEFAULT 1,      -- grows with every membership change (chatParticipants.version)
    last_msg_id integer NOT NULL DEFAULT 0,      -- the newest id of the group's own message sequence
    PRIMARY KEY (shard, id)
);

CREATE TABLE chat_members (
    shard      smallint NOT NULL,
    chat_id    bigint NOT NULL,
    user_id    bigint NOT NULL,
    inviter_id bigint NOT NULL,
    date       integer NOT NULL,
    PRIMARY KEY (shard, chat_id, user_id)
);

CREATE TABLE chat_messages (
    shard      smallint NOT NULL,
    chat_id    bigint NOT NULL,
    id         integer NOT NULL,                 -- in the group's own sequence; members' copies carry it as origin_id
    from_id    bigint NOT NULL,
    date       integer NOT NULL,
    message    text NOT NULL,
    entities   bytea,
    action     bytea,
    random_id  bigint,
    PRIMARY KEY (shard, chat_id, id)
);
CREATE UNIQUE INDEX chat_messages_random_id ON chat_messages (shard, chat_id, from_id, random_id)
    WHERE random_id IS NOT NULL;
