"""The `mtlab` command as a user runs it: a real process."""

from __future__ import annotations

import subprocess
import sys

import pytest


def mtlab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mtlab", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("args", [[], ["up"], ["down"], ["status"], ["key"], ["selfcheck"], ["bench"], ["roles"]])
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


def test_every_option_of_every_command_has_help() -> None:
    import argparse

    from mtlab.cli import build_parser

    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"mtlab {name} {'/'.join(action.option_strings) or action.dest} has no help"
    up_help = mtlab("up", "--help").stdout
    for option in ("--data-dir", "--gateway-port", "--gateway-metrics-port", "--postgres-port", "--detach"):
        assert option in up_help


def test_bench_crypto_prints_every_figure_with_its_baseline() -> None:
    done = mtlab("bench", "crypto", "--quick", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for line in ("raw cryptg encrypt", "reference decrypt", "fast path / raw cryptg at 64 KiB",
                 "encrypt_message", "open_message", "raw GMP baseline", "server handshake", "ratio"):
        assert line in done.stdout


def test_roles_json_for_scripts() -> None:
    import json

    done = mtlab("roles", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert "gateway" in json.dumps(data) and "dba" in json.dumps(data)
