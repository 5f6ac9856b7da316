-- Change capture for online shard moves (shard_db/move.py, `mtlab shards move`).
-- Never edit this file once applied: add 003_*.sql.
--
-- While logical shard N is copied from this database to another, the move adds a trigger `mtlab_move_<N>` on
-- every shard table here. It records the primary key of each row of shard N that is inserted, updated or deleted
-- (in the writer's own transaction: the change and its record commit together, or neither). The move replays
-- those keys on the target (copies the row as it is now, or deletes it when it is gone) until the backlog is
-- small, then freezes the shard's writes for the last few. The move drops its triggers and its rows here when it
-- ends. The column is `logical`, not `shard`, so this table is not itself one of the shard tables a move copies.
CREATE TABLE shard_move_log (
    id      bigserial PRIMARY KEY,
    logical smallint NOT NULL,          -- the logical shard being moved
    tbl     text NOT NULL,              -- the table of the changed row
    pk      jsonb NOT NULL              -- its primary key, column -> value, e.g. {"shard": 5, "owner_id": 7, "id": 3}
);
CREATE INDEX shard_move_log_logical ON shard_move_log (logical, tbl);

-- The trigger function, shared by every table: TG_ARGV[0] is the logical shard being moved, the other arguments
-- the table's primary-key columns (the move reads them from the catalog when it adds the trigger). Rows of other
-- logical shards in the same table pass through untouched.
CREATE FUNCTION mtlab_move_capture() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n        smallint := TG_ARGV[0]::smallint;
    key_cols text[] := TG_ARGV[1:TG_NARGS - 1];
    old_key  jsonb;
    new_key  jsonb;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        IF OLD.shard = n THEN
            old_key := (SELECT jsonb_object_agg(c, to_jsonb(OLD) -> c) FROM unnest(key_cols) AS c);
            INSERT INTO shard_move_log (logical, tbl, pk) VALUES (n, TG_TABLE_NAME, old_key);
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        IF NEW.shard = n THEN
            new_key := (SELECT jsonb_object_agg(c, to_jsonb(NEW) -> c) FROM unnest(key_cols) AS c);
            IF new_key IS DISTINCT FROM old_key THEN  -- an update that kept its key is recorded once
                INSERT INTO shard_move_log (logical, tbl, pk) VALUES (n, TG_TABLE_NAME, new_key);
            END IF;
        END IF;
    END IF;
    RETURN NULL;  -- the result of an AFTER trigger is ignored
END
$$;
