"""Secret chats in process: a MessageLab's message service, the updates service's handlers on the same databases,
and (for files) a MediaLab's media service, called by devices that each have an auth key and the SDK's secret-chat
engine, routed as the gateway routes them."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtlab.client.secret import SecretChats
from mtproto.tl.runtime import Reader
from services.common.config import UpdatesConfig
from services.common.rpc import Handler, context
from services.common.service import rpc_handler
from services.updates import difference
from tests.helpers.media import MediaLab
from tests.helpers.messages import MessageLab, User

log = logging.getLogger("tests.secret")


@dataclass
class Device:
    """One signed-in device (auth key) of a user, calling the services as the gateway would for it."""

    lab: SecretLab
    user: User
    key_id: int
    engine: SecretChats = field(init=False)

    def __post_init__(self) -> None:
        self.engine = SecretChats(self)

    async def invoke(self, query: Any) -> Any:
        handlers = self.lab.handlers_for(query)
        data = await handlers[query.CONSTRUCTOR_ID](context(user_id=self.user.id, auth_key_id=self.key_id),
                                                    query.to_bytes())
        return query.read_result(Reader(data))

    async def events(self) -> list[Any]:
        return await self.engine.catch_up()


class SecretLab:
    def __init__(self, messages: MessageLab, media: MediaLab | None = None, **updates_config: Any) -> None:
        self.messages, self.media = messages, media
        deps = difference.Updates(UpdatesConfig(**updates_config), messages.shards, messages.main)
        self.updates = {cls.CONSTRUCTOR_ID: rpc_handler("updates_test", deps, cls, fn, log)
                        for cls, fn in difference.METHODS.items()}

    def handlers_for(self, query: Any) -> Mapping[int, Handler]:
        """updates.* to the updates service, upload.* to the media service (when there is one), the rest to the
        message service."""
        if query.CONSTRUCTOR_ID in self.updates:
            return self.updates
        if self.media is not None and query.TL_NAME.startswith("upload."):
            return self.media.handlers
        return self.messages.handlers

    async def device(self, user: User) -> Device:
        """A new auth key signed in as ``user`` (the auth service's rows, as a sign-in leaves them)."""
        key_id = int.from_bytes(os.urandom(8), "little", signed=True)
        await self.messages.main.execute("INSERT INTO auth_keys (id, auth_key, handshake_salt) VALUES ($1, $2, 0)",
                                         key_id, os.urandom(256))
        await self.messages.main.execute("INSERT INTO authorizations (auth_key_id, user_id, hash) VALUES ($1, $2, $3)",
                                         key_id, user.id, secrets.randbits(62) + 1)
        return Device(self, user, key_id)
