"""The sharded chat database: shard map, router, migrations, resharding. Not built yet (issue #4)."""
