"""Fixtures: a real gateway process per test module, and a factory for tests that need their own limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.gateway import GatewayProcess, start_gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = start_gateway(tmp_path_factory.mktemp("gateway"))
    yield gw
    gw.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[type]:
    started: list[GatewayProcess] = []

    class Factory:
        @staticmethod
        def start(**env: str) -> GatewayProcess:
            gw = start_gateway(tmp_path / f"gw{len(started)}", **env)
            started.append(gw)
            return gw

    yield Factory
    for gw in started:
        gw.stop()
