"""Fixtures for the client tests: gateway processes (see tests/helpers/client.py) on trio and asyncio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.client import GatewayFactory, start_gateway, thaw


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    gw = start_gateway(tmp_path_factory.mktemp("gateway"))
    yield gw
    thaw(gw)
    gw.stop()



@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[GatewayFactory]:
    factory = GatewayFactory(tmp_path)
    yield factory
    for gw in factory.started:
        thaw(gw)
        gw.stop()
