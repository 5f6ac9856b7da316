"""The gateway's session table: eviction limits, and no replay into a session that was forgotten."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mtproto.crypto import rsa
from mtproto.replay import seeded_randbytes
from mtproto.session import AuthKey, BadMsgCode, Plain, SaltPolicy, open_message, seal
from mtproto.session.server import Rejected, RpcCall
from mtproto.tl import api
from services.common.config import GatewayConfig
from services.gateway import server
from services.gateway.keys import StoredKey

KEY = rsa.load_private_pem((Path(__file__).parents[2] / "mtproto" / "data" / "test_rsa_key.pem").read_bytes())


def gateway() -> server.Gateway:
    return server.Gateway(GatewayConfig(), KEY, SaltPolicy(b"t" * 32))


def stored() -> StoredKey:
    return StoredKey(AuthKey.from_bytes(os.urandom(256)), 0, time.time(), None)


def test_one_key_cannot_push_out_other_clients_sessions() -> None:
    gw = gateway()
    victim, attacker = stored(), stored()
    gw.session_for(victim, 1, time.time())
    for session_id in range(server.MAX_SESSIONS_PER_KEY * 3):
        gw.session_for(attacker, session_id, time.time())
    assert (victim.key.id, 1) in gw.sessions
    assert sum(1 for k, _ in gw.sessions if k == attacker.key.id) == server.MAX_SESSIONS_PER_KEY


def test_a_message_cannot_be_replayed_into_a_forgotten_session() -> None:
    gw = gateway()
    key = stored()
    now = time.time()
    salt = gw.salts.current(key.key.id, now)
    query = api.functions.help.GetConfig().to_bytes()
    captured = seal(key.key, Plain(salt, 7, (int(now) << 32) + 4, 1, query), seeded_randbytes(b"r"), from_client=True)

    first = gw.session_for(key, 7, now).receive(open_message(key.key, captured, from_client=True), now)
    assert [type(e) for e in first] == [RpcCall]
    for session_id in range(100, 100 + server.MAX_SESSIONS_PER_KEY):  # the key's own sessions push 7 out
        gw.session_for(key, session_id, now)
    assert (key.key.id, 7) not in gw.sessions

    again = gw.session_for(key, 7, now).receive(open_message(key.key, captured, from_client=True), now)
    assert Rejected((int(now) << 32) + 4, BadMsgCode.MSG_ID_TOO_OLD) in again
    assert not [e for e in again if isinstance(e, RpcCall)]
