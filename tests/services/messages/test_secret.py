"""Secret chats through the message service and the updates service's getDifference, in-process on real Postgres
(two shard databases): devices of two users run the bundled client's end-to-end engine (mtlab.client.secret)
against the real handlers, with the auth key of each call in its context, as the gateway sends it."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from mtlab.client.secret import (
    ChatClosed,
    ChatReady,
    ChatRequested,
    Message,
    key_fingerprint,
)
from mtproto.crypto.dh import DEFAULT_DH_PRIME, DEFAULT_G
from mtproto.tl import api
from mtproto.tl.runtime import Reader
from services.common import redis as redis_
from services.common.rpc import RpcError
from tests.helpers.messages import MessageLab, User
from tests.helpers.secret import Device, SecretLab

F, U = api.functions.messages, api.functions.updates
log = logging.getLogger("tests.secret")


def run(main_dsn: str, body: Callable[[MessageLab, SecretLab], Awaitable[Any]], **config: Any) -> Any:
    async def go() -> Any:
        async with MessageLab(main_dsn) as lab:
            return await body(lab, SecretLab(lab, **config))

    return asyncio.run(go())


def input_user(user: User) -> api.types.InputUser:
    return api.types.InputUser(user_id=user.id, access_hash=user.access_hash)


def texts(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, Message)]


async def open_chat(s: SecretLab, a: Device, b: Device, *others: Device) -> int:
    """a asks b's user for a chat, b accepts, both are ready: the chat id."""
    chat = await a.engine.request(input_user(b.user))
    for d in (b, *others):
        assert [type(e) for e in await d.events()] == [ChatRequested]
    await b.engine.accept(chat.id)
    ready = await a.events()
    assert [type(e) for e in ready][:1] == [ChatReady]
    await b.events()  # a's layer notice
    return chat.id


def test_two_devices_talk_and_the_recipients_other_device_is_left_out(database: str) -> None:
    async def body(lab: MessageLab, s: SecretLab) -> None:
        alice, bob = await lab.user("Alice"), await lab.user("Bob")
        a, b1, b2 = await s.device(alice), await s.device(bob), await s.device(bob)
        chat = await a.engine.request(input_user(bob))
        # Every device of Bob hears of the request; Alice's own device learns nothing new.
        requested1, requested2 = await b1.events(), await b2.events()
        assert [type(e) for e in requested1] == [type(e) for e in requested2] == [ChatRequested]
        assert requested1[0].chat.peer_id == alice.id
        assert await a.events() == []

        await b2.engine.accept(chat.id)  # the chat is now b2's
        gone = await b1.events()
        assert [type(e) for e in gone] == [ChatClosed]
        ready = await a.events()
        assert [type(e) for e in ready] == [ChatReady, type(ready[1])] and ready[1].action.layer == 73
        assert a.engine.chats[chat.id].key == b2.engine.chats[chat.id].key is not None

        await a.engine.send(chat.id, "hello bob")
        await a.engine.send(chat.id, "second")
        got = await b2.events()
        assert texts(got) == ["hello bob", "second"]  # after a's layer notice: in order, each once
        await b2.engine.send(chat.id, "hi alice")
        assert texts(await a.events()) == ["hi alice"]
        assert await b2.events() == [] and await b1.events() == []

        # The device that did not accept can neither write to the chat nor close it.
        fingerprint = a.engine.chats[chat.id].fingerprint
        assert fingerprint is not None
        forged = fingerprint.to_bytes(8, "little", signed=True) + bytes(32)
        with pytest.raises(RpcError, match="CHAT_ID_INVALID"):
            await b1.invoke(F.SendEncrypted(peer=a.engine.chats[chat.id].input, random_id=5, data=forged))
        with pytest.raises(RpcError, match="CHAT_ID_INVALID"):
            await b1.invoke(F.DiscardEncryption(chat_id=chat.id))

        await a.engine.close(chat.id)
        closed = await b2.events()
        assert [type(e) for e in closed] == [ChatClosed]
        with pytest.raises(RpcError, match="ENCRYPTION_DECLINED"):
            await b2.invoke(F.SendEncrypted(peer=closed[0].chat.input, random_id=6, data=forged))
        with pytest.raises(RpcError, match="ENCRYPTION_ALREADY_DECLINED"):
            await b2.invoke(F.DiscardEncryption(chat_id=chat.id))

    run(database, body)


def test_what_the_server_checks(database: str) -> None:
    async def body(lab: MessageLab, s: SecretLab) -> None:
        alice, bob, carol = await lab.user("Alice"), await lab.user("Bob"), await lab.user("Carol")
        a, b, c = await s.device(alice), await s.device(bob), await s.device(carol)
        p = DEFAULT_DH_PRIME

        config = await a.invoke(F.GetDhConfig(version=0, random_length=256))
        assert isinstance(config, api.types.messages.DhConfig)
        assert (config.g, int.from_bytes(config.p, "big"), len(config.random)) == (DEFAULT_G, p, 256)
        again = await a.invoke(F.GetDhConfig(version=config.version, random_length=16))
        assert isinstance(again, api.types.messages.DhConfigNotModified) and len(again.random) == 16
        assert again.random != (await a.invoke(F.GetDhConfig(version=config.version, random_length=16))).random
        with pytest.raises(RpcError, match="RANDOM_LENGTH_INVALID"):
            await a.invoke(F.GetDhConfig(version=0, random_length=4096))

        good = pow(DEFAULT_G, secrets.randbits(2048), p).to_bytes(256, "big")
        for bad in (b"\x02", (1).to_bytes(256, "big"), (p - 1).to_bytes(256, "big"), (2 ** 1900).to_bytes(256, "big"),
                    good[:255]):
            with pytest.raises(RpcError, match="DH_G_A_INVALID"):
                await a.invoke(F.RequestEncryption(user_id=input_user(bob), random_id=7, g_a=bad))
        with pytest.raises(RpcError, match="USER_ID_INVALID"):
            await a.invoke(F.RequestEncryption(user_id=api.types.InputUser(user_id=bob.id, access_hash=1),
                                               random_id=7, g_a=good))
        waiting = await a.invoke(F.RequestEncryption(user_id=input_user(bob), random_id=7, g_a=good))
        assert isinstance(waiting, api.types.EncryptedChatWaiting)
        # A resend answers the same chat; the same random_id for another request is refused.
        assert await a.invoke(F.RequestEncryption(user_id=input_user(bob), random_id=7, g_a=good)) == waiting
        with pytest.raises(RpcError, match="RANDOM_ID_DUPLICATE"):
            await a.invoke(F.RequestEncryption(user_id=input_user(carol), random_id=7, g_a=good))

        peer = api.types.InputEncryptedChat(chat_id=waiting.id, access_hash=waiting.access_hash)
        g_b = pow(DEFAULT_G, secrets.randbits(2048), p).to_bytes(256, "big")
        # Strangers (another user, a wrong access_hash, the requester herself) cannot accept.
        for device, chat in ((c, peer), (b, api.types.InputEncryptedChat(chat_id=waiting.id, access_hash=1)),
                             (a, peer)):
            with pytest.raises(RpcError, match="CHAT_ID_INVALID"):
                await device.invoke(F.AcceptEncryption(peer=chat, g_b=g_b, key_fingerprint=1))
        with pytest.raises(RpcError, match="DH_G_B_INVALID"):
            await b.invoke(F.AcceptEncryption(peer=peer, g_b=(2).to_bytes(256, "big"), key_fingerprint=1))
        # Bob's device was signed in before the request: it may accept, once.
        key = pow(int.from_bytes(good, "big"), 5, p).to_bytes(256, "big")
        accepted = await b.invoke(F.AcceptEncryption(peer=peer, g_b=g_b, key_fingerprint=key_fingerprint(key)))
        assert isinstance(accepted, api.types.EncryptedChat) and accepted.g_a_or_b == good
        with pytest.raises(RpcError, match="ENCRYPTION_ALREADY_ACCEPTED"):
            await b.invoke(F.AcceptEncryption(peer=peer, g_b=g_b, key_fingerprint=1))

        # Encrypted bytes: the server checks the envelope it can see, never the content.
        envelope = key_fingerprint(key).to_bytes(8, "little", signed=True) + bytes(16)
        with pytest.raises(RpcError, match="DATA_INVALID"):
            await a.invoke(F.SendEncrypted(peer=peer, random_id=1, data=envelope + bytes(15)))  # not whole blocks
        with pytest.raises(RpcError, match="DATA_INVALID"):
            await a.invoke(F.SendEncrypted(peer=peer, random_id=1, data=bytes(8) + bytes(16) + bytes(32)))
        with pytest.raises(RpcError, match="CHAT_ID_INVALID"):
            await c.invoke(F.SendEncrypted(peer=peer, random_id=1, data=envelope + bytes(16)))
        # (sendEncryptedFile needs the media service too: tests/services/media/test_secret_files.py)
        first = await a.invoke(F.SendEncrypted(peer=peer, random_id=1, data=envelope + bytes(16)))
        resent = await a.invoke(F.SendEncrypted(peer=peer, random_id=1, data=envelope + bytes(16)))
        assert resent == first
        assert (await b.invoke(U.GetState())).qts == 1  # once
        with pytest.raises(RpcError, match="MAX_QTS_INVALID"):
            await b.invoke(F.ReceivedQueue(max_qts=2))
        assert await b.invoke(F.ReceivedQueue(max_qts=1)) == [1]

        await a.invoke(F.DiscardEncryption(chat_id=waiting.id))
        with pytest.raises(RpcError, match="ENCRYPTION_ALREADY_DECLINED"):
            await a.invoke(F.DiscardEncryption(chat_id=waiting.id))
        with pytest.raises(RpcError, match="ENCRYPTION_DECLINED"):
            await b.invoke(F.SendEncrypted(peer=peer, random_id=2, data=envelope + bytes(16)))

    run(database, body)


def test_a_fingerprint_that_does_not_match_ends_the_chat(database: str) -> None:
    async def body(lab: MessageLab, s: SecretLab) -> None:
        alice, bob = await lab.user("Alice"), await lab.user("Bob")
        a, b = await s.device(alice), await s.device(bob)
        chat = await a.engine.request(input_user(bob))
        [requested] = await b.events()
        assert isinstance(requested, ChatRequested) and requested.chat.g_a is not None
        # A man in the middle (or a broken client) accepts with a key that is not the one Alice will compute.
        g_b = pow(DEFAULT_G, secrets.randbits(2048), DEFAULT_DH_PRIME).to_bytes(256, "big")
        await b.invoke(F.AcceptEncryption(peer=requested.chat.input, g_b=g_b, key_fingerprint=12345))
        [closed] = await a.events()
        assert isinstance(closed, ChatClosed) and "fingerprint" in closed.reason
        assert a.engine.chats[chat.id].key is None
        # Alice's client discarded it on the server too: Bob's device hears so.
        assert [type(e) for e in await b.events()] == [ChatClosed]

    run(database, body)


def test_qts_is_gap_free_per_device_and_difference_returns_the_queue_after_qts(database: str) -> None:
    async def body(lab: MessageLab, s: SecretLab) -> None:
        alice, bob = await lab.user("Alice"), await lab.user("Bob")
        a, b, b_other = await s.device(alice), await s.device(bob), await s.device(bob)
        chat_id = await open_chat(s, a, b, b_other)
        await b_other.events()
        assert b.engine.qts == 1  # Alice's layer notice
        for i in range(6):
            await a.engine.send(chat_id, f"m{i}")

        state = await b.invoke(U.GetState())
        assert state.qts == 7 and (await b_other.invoke(U.GetState())).qts == 0  # per device
        rows = await lab.shard_rows("SELECT qts FROM qts_queue WHERE user_id = $1 AND auth_key_id = $2 AND "
                                    "kind = 'updateNewEncryptedMessage' ORDER BY qts", bob.id, b.key_id)
        assert [r["qts"] for r in rows] == [2, 3, 4, 5, 6, 7]  # acknowledged up to 1; no gap, no duplicate

        async def diff(qts: int, limit: int | None = None) -> Any:
            return await b.invoke(U.GetDifference(pts=state.pts, qts=qts, date=0, pts_total_limit=limit))

        queued = await _random_ids(lab, bob.id, b.key_id)
        for after in (1, 3, 6):
            d = await diff(after)
            assert isinstance(d, api.types.updates.Difference) and d.state.qts == 7
            assert [m.random_id for m in d.new_encrypted_messages] == [rid for qts, rid in queued if qts > after]
        part = await diff(1, limit=2)
        assert isinstance(part, api.types.updates.DifferenceSlice) and part.intermediate_state.qts == 3
        assert isinstance(await diff(7), api.types.updates.DifferenceEmpty)

        acked = await b.invoke(F.ReceivedQueue(max_qts=4))
        assert len(acked) == 3
        d = await diff(1)  # what was acknowledged is gone from the queue
        assert len(d.new_encrypted_messages) == 3 and d.state.qts == 7
        # The engine was at qts 1: m0..m2 were acknowledged behind its back, so m3 comes after a gap in the
        # end-to-end sequence, which it must not paper over.
        got = await b.events()
        assert isinstance(got[0], ChatClosed) and "gap" in got[0].reason and texts(got) == []

    run(database, body)


async def _random_ids(lab: MessageLab, user_id: int, key_id: int) -> list[tuple[int, int]]:
    rows = await lab.shard_rows("SELECT qts, body FROM qts_queue WHERE user_id = $1 AND auth_key_id = $2 AND "
                                "kind = 'updateNewEncryptedMessage' ORDER BY qts", user_id, key_id)
    return [(r["qts"], Reader(bytes(r["body"])).read_object().message.random_id) for r in rows]  # type: ignore[attr-defined]


# -- the server cannot read a secret chat -----------------------------------------------------------------------


async def _everything_stored(lab: MessageLab) -> str:
    """Every row of every table of the main database and of every shard database, as text (bytea as hex)."""
    pools = [lab.main] + [await lab.shards.pool(p) for p in sorted(lab.shards.map.dsns)]
    dump: list[str] = []
    for pool in pools:
        tables = await pool.fetch("SELECT quote_ident(table_name) AS t FROM information_schema.tables "
                                  "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")
        assert tables
        for t in tables:
            rows = await pool.fetch(f"SELECT x::text AS row FROM {t['t']} AS x")  # names from the catalog
            dump.extend(r["row"] for r in rows)
    return "\n".join(dump)


def _found(marker: str, haystack: str) -> bool:
    lowered = haystack.lower()
    return marker in haystack or marker.encode().hex() in lowered or marker.encode("utf-16-le").hex() in lowered


def test_the_server_never_sees_a_secret_chats_plaintext(database: str, redis_url: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Two bundled clients exchange messages: the words appear nowhere in Postgres (every table of the main and
    shard databases), on Redis (everything published meanwhile) or in the services' logs, while an ordinary
    cloud message sent alongside is found by the same searches (so they can find something)."""
    secret_words = ["the eagle lands at dawn 7f3a", "reply: the owl sleeps at noon 91c2"]
    cloud_words = "cloud control message 55d0"

    async def body(lab: MessageLab, s: SecretLab) -> None:
        lab.deps.redis = redis_.connect(redis_url)
        listener = aioredis.Redis.from_url(redis_url)
        pubsub = listener.pubsub()
        await pubsub.psubscribe("*")
        try:
            alice, bob = await lab.user("Alice"), await lab.user("Bob")
            a, b = await s.device(alice), await s.device(bob)
            chat_id = await open_chat(s, a, b)
            await a.engine.send(chat_id, secret_words[0])
            assert texts(await b.events()) == [secret_words[0]]
            await b.engine.send(chat_id, secret_words[1])
            assert texts(await a.events()) == [secret_words[1]]
            await lab.call(alice, F.SendMessage(peer=lab.peer(bob), message=cloud_words, random_id=99))

            published: list[bytes] = []
            while (note := await pubsub.get_message(timeout=1.0)) is not None:  # until a second of silence
                if note["type"] == "pmessage":
                    published.append(bytes(note["channel"]) + b" " + bytes(note["data"]))
            stored = await _everything_stored(lab)
        finally:
            await pubsub.aclose()
            await listener.aclose()
            await lab.deps.redis.aclose()
        on_redis = "\n".join(p.hex() for p in published) + "\n" + "\n".join(p.decode("latin-1") for p in published)
        # The relay did publish the encrypted updates for the devices (so Redis was listened to)...
        assert sum(f"mtlab:updates:{bob.id}".encode() in p for p in published) >= 3
        # ...and the stores hold the chat's encrypted messages' traces and the cloud message...
        assert _found(cloud_words, stored)
        for words in secret_words:
            assert not _found(words, stored), f"{words!r} is in a table"
            assert not _found(words, on_redis), f"{words!r} was published on Redis"

    with caplog.at_level(logging.DEBUG):
        run(database, body)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert caplog.records  # the services did log (the transactions, the handlers)
    for words in secret_words:
        assert not _found(words, logged), f"{words!r} was logged"
