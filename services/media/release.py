"""Releasing a file once no message carries it any more: the file's row goes, each of its blobs loses a reference,
and a blob left with none is deleted by the sweeper's orphan step after ``orphan_grace``.

Messages live on the message service's shards, where this service cannot look, and a file may be carried by many
copies there (both boxes of a private chat, every member's copy in a group, forwards, a channel's one post). So a
release is not driven by deletions, counted message by message; it is a question asked afterwards, each sweep:

1. candidates: files a message named (``held_at``, set by media.attach for sendMedia and forwards, never for
   messages.uploadMedia) more than ``release_grace`` ago, not asked about for ``release_recheck`` seconds;
2. ``files.inUse`` to the message service: which of them some message still carries (it searches every shard's
   indexed ``file_id`` columns and the deliveries still waiting in outboxes); an answer that is not ``complete``
   (a shard moved meanwhile) proves nothing, and this sweep stops there;
3. each file not carried is released in one transaction that locks its row and checks ``held_at`` again: a
   message that named it after step 1 (a forward of a cached copy) keeps it; the others are marked checked.

Why this is safe: a message that carries a file was written after its attach set ``held_at``; once ``held_at``
is older than the grace, that message is written (or its send failed), so step 2 sees it wherever it is. Nothing
between a deletion and a release can be lost in a crash, because there is nothing in between: a file whose last
message was deleted is released by a later sweep, however the message service fared; and a wrong "not carried"
cannot happen without a message written more than ``release_grace`` after its attach. The cost: freeing is late
by up to a sweep plus ``release_recheck``, and each sweep asks about at most ``BATCHES`` times ``BATCH`` files.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from prometheus_client import Counter

from mtproto.tl.internal.functions import files as files_fn
from mtproto.tl.runtime import Reader
from services.common.rpc import context
from services.media import store

if TYPE_CHECKING:
    from services.media.handlers import Media

log = logging.getLogger("mtlab.media.release")

RELEASED = Counter("mtlab_media_released_total", "Files released because no message carries them any more")
BATCH = 500  # files asked about per files.inUse
BATCHES = 20  # files.inUse calls per sweep at most


async def once(deps: Media) -> int:
    """One round of the release: how many files were released (0 without a message service)."""
    if deps.messages is None:
        return 0
    now = deps.clock()
    held_before = now - deps.config.release_grace
    checked_before = now - deps.config.release_recheck
    released = 0
    for _ in range(BATCHES):
        ids = await deps.txn("release_candidates", functools.partial(
            store.release_candidates, held_before=held_before, checked_before=checked_before, limit=BATCH))
        if not ids:
            break
        query = files_fn.InUse(file_ids=ids)
        answer = query.read_result(Reader(await deps.messages.call(query.to_bytes(), context())))
        if not answer.complete:
            log.info("release: a shard moved while the messages were searched; asking again next sweep")
            break
        used = set(answer.file_ids)
        for file_id in ids:
            if file_id in used:
                continue
            freed = await deps.txn("release", functools.partial(store.release_unused, file_id=file_id,
                                                                held_before=held_before))
            if freed is not None:
                released += 1
                log.info("file %d released: no message carries it (%d blobs unreferenced)", file_id, len(freed))
        await deps.txn("release_checked", functools.partial(store.mark_checked, file_ids=ids, now=now))
        if len(ids) < BATCH:
            break
    RELEASED.inc(released)
    return released
