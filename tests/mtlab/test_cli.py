"""The `mtlab` command as a user runs it: a real process."""

from __future__ import annotations

import subprocess
import sys

import pytest


def mtlab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mtlab", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("args", [[], ["up"], ["selfcheck"], ["bench"]])
def test_help_everywhere(args: list[str]) -> None:
    done = mtlab(*args, "--help")
    assert done.returncode == 0
    assert "usage: mtlab" in done.stdout


def test_unknown_command_fails_clearly() -> None:
    done = mtlab("fly")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_selfcheck_passes_over_every_transport(backend: str) -> None:
    done = mtlab("selfcheck", "--backend", backend)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("  ok   ") == 7
    assert "self-check passed" in done.stdout


def test_up_runs_the_selfcheck_until_the_stack_exists() -> None:
    done = mtlab("up")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "self-check passed" in done.stdout
