-- The schema of every physical shard database (shard_db/migrations.py applies it to each one).
-- Never edit this file once applied: add 002_*.sql.
--
-- Every table leads with `shard`, the logical shard (0 .. logical-1) a row belongs to: a physical database holds
-- many logical shards side by side, and moving one logical shard to another database is a copy of the rows
-- `WHERE shard = N` of each table (mtlab shards move). The shard of a user's rows is shard_db.router's
-- shard_for_user(user_id); every query names it, so every lookup uses the primary key's leading column.

-- Which logical shards this database serves. A transaction on logical shard N first calls mtlab_shard_enter(N):
-- it takes a shared advisory lock on N (a shard move takes it exclusively to freeze writes) and refuses unless
-- N is 'active' here, so a service with a stale map can never write to a database the shard has left.
CREATE TABLE shard_local (
    logical    smallint PRIMARY KEY,
    state      text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'incoming', 'gone')),
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION mtlab_shard_enter(n smallint) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    -- 1836346466 is 'mtlb' read as a 32-bit integer: the (class, shard) pair keeps these locks apart from others.
    PERFORM pg_advisory_xact_lock_shared(1836346466, n);
    -- A new statement, so under READ COMMITTED it sees a move that committed while this transaction waited.
    SELECT state INTO st FROM shard_local WHERE logical = n;
    IF st IS DISTINCT FROM 'active' THEN
        RAISE EXCEPTION 'logical shard % is not served by this database (%)', n, coalesce(st, 'absent')
            USING ERRCODE = 'MTL01';
    END IF;
END
$$;

-- Per user: the counters every write to that user's box takes in turn (the row lock serializes one user's
-- writes, which is what keeps pts gap-free and message ids increasing).
CREATE TABLE user_state (
    shard       smallint NOT NULL,
    user_id     bigint NOT NULL,
    pts         integer NOT NULL DEFAULT 0 CHECK (pts >= 0),          -- the newest pts in the user's update log
    last_msg_id integer NOT NULL DEFAULT 0 CHECK (last_msg_id >= 0),  -- the newest message id given out in the box
    PRIMARY KEY (shard, user_id)
);

-- Message boxes. Each participant of a private chat has their own copy of each message, with an id from their
-- own box (core.telegram.org/api/updates: message ids are per user outside channels).
CREATE TABLE messages (
    shard       smallint NOT NULL,
    owner_id    bigint NOT NULL,              -- whose box
    id          integer NOT NULL,             -- the id in that box
    peer_type   smallint NOT NULL CHECK (peer_type IN (1, 2)),  -- 1: a user (private chat), 2: a basic group
    peer_id     bigint NOT NULL,              -- the other user (or the owner: Saved Messages), or the group
    from_id     bigint NOT NULL,              -- who wrote it
    out         boolean NOT NULL,             -- the owner wrote it
    date        integer NOT NULL,             -- unix time of sending
    message     text NOT NULL,
    entities    bytea,                        -- Vector<MessageEntity> as TL (formatting), or NULL
    media       bytea,                        -- MessageMedia as TL, or NULL
    action      bytea,                        -- MessageAction as TL for a service message ("X joined"), else NULL
    reply_to_id integer,                      -- the message it answers, by its id in this box
    fwd_from_id bigint,                       -- forwarded: the original author
    fwd_date    integer,                      --            and the original date
    edit_date   integer,
    silent      boolean NOT NULL DEFAULT false,
    random_id   bigint,                       -- the sender's random_id, on the sender's copy only: resends dedup on it
    -- Who sent the message under which id in their own box. Both copies of a private message carry the same
    -- pair: it maps an id in one box to the id in the other (edits, deletions, read receipts, replies). In a
    -- basic group every member's copy carries (-chat_id, the message's id in the group's own sequence).
    origin_user bigint NOT NULL,
    origin_id   integer NOT NULL,
    pts         integer NOT NULL,             -- the owner's pts after the update that put it in the box
    PRIMARY KEY (shard, owner_id, id)
);
CREATE UNIQUE INDEX messages_origin ON messages (shard, owner_id, origin_user, origin_id);
CREATE UNIQUE INDEX messages_random_id ON messages (shard, owner_id, random_id) WHERE random_id IS NOT NULL;
-- History of one dialog, newest first.
CREATE INDEX messages_peer ON messages (shard, owner_id, peer_type, peer_id, id);

-- One row per conversation in a user's chat list.
CREATE TABLE dialogs (
    shard              smallint NOT NULL,
    owner_id           bigint NOT NULL,
    peer_type          smallint NOT NULL CHECK (peer_type IN (1, 2, 3)),  -- 3: a channel
    peer_id            bigint NOT NULL,
    top_message        integer NOT NULL DEFAULT 0,   -- the newest message's id (0: none left)
    top_date           integer NOT NULL DEFAULT 0,   -- its date: the chat list is sorted by it, newest first
    read_inbox_max_id  integer NOT NULL DEFAULT 0,   -- the owner read incoming messages up to here
    read_outbox_max_id integer NOT NULL DEFAULT 0,   -- the peer read the owner's messages up to here
    unread_count       integer NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    PRIMARY KEY (shard, owner_id, peer_type, peer_id)
);
CREATE INDEX dialogs_recent ON dialogs (shard, owner_id, top_date DESC, top_message DESC);

-- Each user's update log: what updates.getDifference replays and what the updates service pushes. pts is the
-- user's pts after the update, pts_count how many it advanced (core.telegram.org/api/updates): consecutive rows
-- satisfy pts = previous pts + pts_count, with no gaps, because both are written under the user_state row lock.
CREATE TABLE update_log (
    shard     smallint NOT NULL,
    owner_id  bigint NOT NULL,
    pts       integer NOT NULL,
    pts_count integer NOT NULL CHECK (pts_count > 0),
    date      integer NOT NULL,
    kind      text NOT NULL,                 -- the update's TL name, for people reading the table
    body      bytea NOT NULL,                -- the Update object as TL bytes, as the client receives it
    PRIMARY KEY (shard, owner_id, pts)
);

-- The outbox: an effect on another user's shard, written in the same transaction as the change that causes it
-- (a message for the recipient's box, an edit, a deletion, a read receipt). services/messages/outbox.py applies
-- each row to its target in order per source user and deletes it; outbox_applied on the target side makes a
-- second application (after a crash between the two commits) a no-op. So nothing is lost and nothing doubled.
CREATE TABLE outbox (
    shard      smallint NOT NULL,
    id         uuid NOT NULL,                -- random, so it stays unique when the shard moves to another database
    source_id  bigint NOT NULL,              -- the user whose action it is: rows of one source apply in seq order
    seq        integer NOT NULL,             -- the source user's pts when it was written
    kind       text NOT NULL,                -- deliver, edit, delete, read
    target_id  bigint NOT NULL,              -- the user it changes
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts   integer NOT NULL DEFAULT 0,
    last_error text,
    PRIMARY KEY (shard, id)
);
CREATE INDEX outbox_source ON outbox (shard, source_id, seq);
CREATE INDEX outbox_age ON outbox (shard, created_at);

CREATE TABLE outbox_applied (
    shard      smallint NOT NULL,            -- the logical shard it was applied to
    id         uuid NOT NULL,                -- the outbox row's id
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, id)
);

-- Each user's contacts (contacts.importContacts): the people they know by phone number, under the names they
-- gave them. Kept on the owner's shard: only the owner reads the list.
CREATE TABLE contacts (
    shard      smallint NOT NULL,
    owner_id   bigint NOT NULL,
    user_id    bigint NOT NULL,
    first_name text NOT NULL DEFAULT '',
    last_name  text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, owner_id, user_id)
);
