"""A client and server over an in-memory link: handshake + encrypted RPCs, on trio and on asyncio."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtlab.selfcheck import exchange
from mtproto.crypto import rsa
from mtproto.tl import api, mt
from mtproto.transport import TransportKind

KEY = rsa.load_private_pem((Path(__file__).parent.parent / "mtproto" / "data" / "test_rsa_key.pem").read_bytes())

COMBINATIONS = [(k, False) for k in TransportKind] + [(k, True) for k in TransportKind if k is not TransportKind.FULL]


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
@pytest.mark.parametrize(("kind", "obfuscated"), COMBINATIONS, ids=lambda v: getattr(v, "value", str(v)))
async def test_handshake_then_encrypted_rpcs(kind: TransportKind, obfuscated: bool) -> None:
    transcript = await exchange(kind, obfuscated, rsa_key=KEY)
    assert sorted(transcript.results) == [
        "invokeWithLayer -> config(this_dc=2, dc_options=1)",
        "ping -> pong(ping_id=42)",
    ]
    # the client started with salt 0 and learned the real one from bad_server_salt, resending both queries
    assert any("resent 2" in line for line in transcript.log)
    assert f"server: auth key {transcript.auth_key_id} created and stored" in transcript.log


@pytest.mark.anyio
async def test_legacy_rsa_client() -> None:
    transcript = await exchange(TransportKind.FULL, False, rsa_key=KEY, legacy_rsa=True)
    assert len(transcript.results) == 2


@pytest.mark.anyio
async def test_unknown_method_gets_an_rpc_error() -> None:
    queries = [api.functions.InvokeWithoutUpdates(query=mt.functions.DestroyAuthKey())]
    transcript = await exchange(TransportKind.INTERMEDIATE, True, rsa_key=KEY, queries=queries)
    assert transcript.results == ["invokeWithoutUpdates -> rpc_error 400 METHOD_NOT_IMPLEMENTED"]
