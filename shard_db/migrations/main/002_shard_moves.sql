-- Online moves of a logical shard between physical shards (shard_db/move.py, `mtlab shards move`).
-- Never edit this file once applied: add 003_*.sql.
--
-- One row per move, kept once it ends as the shard's history. The row of an unfinished move records the step
-- it reached, so a move that was interrupted (Ctrl-C, a crash, a lost connection) is resumed by running
-- `mtlab shards move` again, or rolled back with `mtlab shards move --abort`. The steps, in order:
--
--   started      the row exists; nothing was done on the shards yet
--   copying      the target marked the shard 'incoming', the source captures changes (shard_move_log):
--                the bulk copy is under way; `copied` names the tables already copied whole
--   catching_up  the bulk copy is complete: changes are being replayed, then the short write freeze
--   switched     the map points at the target (written in the same transaction as this step): the move has
--                happened; what is left is removing the shard's rows from the source
--   done         finished; aborted: rolled back (the shard never left the source)
CREATE TABLE shard_moves (
    id          bigserial PRIMARY KEY,
    logical     smallint NOT NULL REFERENCES shard_map (logical),
    source      text NOT NULL REFERENCES shard_physical (name),
    target      text NOT NULL REFERENCES shard_physical (name),
    step        text NOT NULL DEFAULT 'started'
                CHECK (step IN ('started', 'copying', 'catching_up', 'switched', 'done', 'aborted')),
    copied      jsonb NOT NULL DEFAULT '{}',      -- table name -> rows, for each table whose bulk copy is complete
    changes     bigint NOT NULL DEFAULT 0,        -- captured changes replayed on the target (catch-up)
    freeze_ms   double precision,                 -- how long the shard's writes were frozen at the switch
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK (source <> target)
);

-- At most one unfinished move per logical shard.
CREATE UNIQUE INDEX shard_moves_unfinished ON shard_moves (logical) WHERE step NOT IN ('done', 'aborted');
