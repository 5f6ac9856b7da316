-- The shard map, in the main database (shard_db/layout.py). Never edit this file once applied: add 002_*.sql.
--
-- Users and chats are spread over a fixed number of *logical* shards by id (shard_db/router.py); each logical
-- shard lives in one *physical* shard, a Postgres database. Resharding moves a logical shard from one physical
-- shard to another and changes one row of shard_map; the number of logical shards never changes.

-- One Postgres database that holds logical shards.
CREATE TABLE shard_physical (
    name       text PRIMARY KEY CHECK (name ~ '^[a-z0-9_]{1,40}$'),  -- shard0, shard1, ...
    dsn        text NOT NULL UNIQUE,                                 -- how the services connect to it
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Where each logical shard lives. version counts the moves of that shard, for logs and for `mtlab shards list`.
CREATE TABLE shard_map (
    logical    smallint PRIMARY KEY CHECK (logical >= 0),
    physical   text NOT NULL REFERENCES shard_physical (name),
    version    integer NOT NULL DEFAULT 1,
    moved_at   timestamptz
);

-- Facts about the layout as a whole: the logical shard count, fixed when the map is created.
CREATE TABLE shard_settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
