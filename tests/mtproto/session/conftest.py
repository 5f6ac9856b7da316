"""The ``pair`` fixture: a fresh client/server session pair per test."""

from __future__ import annotations

import os

import pytest

from mtproto.session import AuthKey, ClientSession, SaltPolicy, ServerSession
from tests.helpers.session import Pair, drbg


@pytest.fixture
def pair() -> Pair:
    rand = drbg(b"session-tests")
    key = AuthKey.from_bytes(os.urandom(256))
    salts = SaltPolicy(b"s" * 32)
    client = ClientSession(key, session_id=77, salt=0, randbytes=rand)
    server = ServerSession(key, 77, salts=salts, randbytes=rand)
    return Pair(key, client, server, salts)
