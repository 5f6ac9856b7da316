"""Fixtures for the auth service's tests: a stack (database, Redis database, auth process) per test module.

Each stack gets its own database and Redis database number, so its users, codes and flood counters are its own.
The processes themselves are started by tests.helpers.auth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.helpers.auth import Stack, make_stack


@pytest.fixture(params=["asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def stack_factory(tmp_path_factory: pytest.TempPathFactory, databases: Any,
                  redis_databases: Any) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(**env: str) -> Stack:
        stack = make_stack(tmp_path_factory.mktemp("stack"), databases, redis_databases, **env)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.close()
