-- Secret chats (core.telegram.org/api/end-to-end) and the per-device qts queues (core.telegram.org/api/updates:
-- "qts" is the sequence of secret-chat updates). The server holds no key: only g_a, g_b, the key fingerprint, the
-- encrypted bytes, their sizes and times. services/messages/secret.py writes these; never edit once applied.

-- Each participant's copy of a secret chat, on the participant's own shard (as message boxes are): the requester
-- (admin) and the other user each have one, written by their own shard's transactions; the other side's change
-- travels through the outbox (services/messages/outbox.py). A secret chat is between two DEVICES: the admin's
-- device (admin_key, the auth key that requested it) and the participant's device that accepted (participant_key).
CREATE TABLE secret_chats (
    shard           smallint NOT NULL,
    owner_id        bigint NOT NULL,              -- whose copy (admin_id or participant_id)
    id              integer NOT NULL,             -- the chat id (main database: secret_chat_ids)
    access_hash     bigint NOT NULL,              -- inputEncryptedChat carries it
    admin_id        bigint NOT NULL,              -- who requested the chat
    admin_key       bigint NOT NULL,              -- the requesting device (auth_key_id)
    participant_id  bigint NOT NULL,
    participant_key bigint,                       -- the device that accepted (NULL while requested)
    -- The participant's devices that were told of the request: the ones that did not accept hear it is gone.
    notified_keys   bigint[] NOT NULL DEFAULT '{}',
    state           text NOT NULL CHECK (state IN ('requested', 'accepted', 'discarded')),
    g_a             bytea NOT NULL CHECK (octet_length(g_a) = 256),
    g_b             bytea CHECK (octet_length(g_b) = 256),
    key_fingerprint bigint,                       -- as the accepting client computed it: the server cannot check it
    random_id       integer NOT NULL,             -- the admin's requestEncryption random_id (resends dedup on it)
    date            integer NOT NULL,             -- when it was requested
    history_deleted boolean NOT NULL DEFAULT false,
    PRIMARY KEY (shard, owner_id, id)
);
CREATE UNIQUE INDEX secret_chats_random_id ON secret_chats (shard, owner_id, random_id) WHERE owner_id = admin_id;

-- Per device: the newest qts given out, and the position of the newest queued update. The row lock serializes
-- one device's queue writes, so qts has no gap. Only updateNewEncryptedMessage takes a qts (as on Telegram, where
-- qts counts encrypted messages); updateEncryption is queued at the current qts without taking one.
CREATE TABLE qts_state (
    shard       smallint NOT NULL,
    user_id     bigint NOT NULL,
    auth_key_id bigint NOT NULL,
    qts         integer NOT NULL DEFAULT 0 CHECK (qts >= 0),
    pos         bigint NOT NULL DEFAULT 0 CHECK (pos >= 0),
    PRIMARY KEY (shard, user_id, auth_key_id)
);

-- Per device: its secret-chat updates not yet acknowledged, in order (pos), exactly as the device receives them
-- (updateNewEncryptedMessage, updateEncryption): what updates.getDifference(qts) replays. messages.receivedQueue
-- (max_qts) deletes every row up to max_qts.
CREATE TABLE qts_queue (
    shard       smallint NOT NULL,
    user_id     bigint NOT NULL,
    auth_key_id bigint NOT NULL,
    pos         bigint NOT NULL,
    qts         integer NOT NULL,                 -- the message's qts; for updateEncryption the qts it came after
    date        integer NOT NULL,
    kind        text NOT NULL,                    -- the update's TL name, for people reading the table
    body        bytea NOT NULL,                   -- the Update as TL bytes
    PRIMARY KEY (shard, user_id, auth_key_id, pos)
);
CREATE INDEX qts_queue_qts ON qts_queue (shard, user_id, auth_key_id, qts);

-- The random_ids of encrypted messages delivered to the owner, per chat: a resend (the sender did not get the
-- answer) is answered with the first delivery's date and not queued twice.
CREATE TABLE secret_random_ids (
    shard     smallint NOT NULL,
    owner_id  bigint NOT NULL,                    -- the recipient
    chat_id   integer NOT NULL,
    random_id bigint NOT NULL,
    date      integer NOT NULL,
    PRIMARY KEY (shard, owner_id, chat_id, random_id)
);
