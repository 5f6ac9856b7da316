"""The sharded chat database: the shard map, the router the services use, migrations for every shard.

- ``layout``: the map in the main database (logical shard -> physical database) and ``prepare``, which creates
  and migrates everything, safe to re-run;
- ``router``: ``Shards``, with ``for_user``/``for_chat`` and ``txn(shard, name, fn)`` on the right database;
- ``move``: the online move of a logical shard to another database (``mtlab shards move``), resumable;
- ``admin``: what ``mtlab db status`` and ``mtlab shards list|rebalance|add`` show and plan;
- ``migrations/main`` (the map's tables) and ``migrations/shard`` (what every physical shard holds).
"""

from shard_db.layout import LayoutError, ShardMap, prepare
from shard_db.router import Shards, ShardUnavailable, shard_of

__all__ = ["LayoutError", "ShardMap", "ShardUnavailable", "Shards", "prepare", "shard_of"]
