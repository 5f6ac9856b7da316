"""The `mtlab` command line: one entry point for students, teachers and scripts.

Subcommands print what they do; every one has ``--help``. Until the services exist (issue #3), ``mtlab up``
runs the protocol self-check: a full handshake and encrypted exchange between an in-process client and
server over every transport, printed as a transcript.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Sequence

import anyio

from mtlab.roles import add_roles_command
from mtproto.tl import LAYER
from mtproto.transport import TransportKind

_PLAIN_AND_OBFUSCATED = [(kind, False) for kind in TransportKind] + [
    (kind, True) for kind in TransportKind if kind is not TransportKind.FULL
]


def _cmd_selfcheck(args: argparse.Namespace) -> int:
    from mtlab.selfcheck import exchange
    from mtproto.crypto import rsa

    print(f"mtlab self-check: MTProto 2.0, API layer {LAYER}, in-process client and server, {args.backend}")
    started = time.perf_counter()
    key = rsa.generate_rsa_key()
    print(f"  server RSA key: fingerprint {rsa.fingerprint(key.n, key.e) & (2**64 - 1):016x} "
          f"(generated in {time.perf_counter() - started:.2f}s)")
    failures = 0
    for kind, obfuscated in _PLAIN_AND_OBFUSCATED:
        name = f"{kind.value}{' + obfuscated2' if obfuscated else ''}"
        t0 = time.perf_counter()
        try:
            transcript = anyio.run(
                functools.partial(exchange, kind, obfuscated, rsa_key=key, legacy_rsa=args.legacy_rsa),
                backend=args.backend,
            )
        except Exception as exc:  # a self-check reports every failure and goes on with the next transport
            failures += 1
            print(f"  FAIL {name}: {type(exc).__name__}: {exc}")
            continue
        ms = (time.perf_counter() - t0) * 1000
        print(f"  ok   {name:<38} key {transcript.auth_key_id}  {ms:6.1f} ms  "
              f"{transcript.bytes_up} B up / {transcript.bytes_down} B down")
        if args.verbose:
            for line in transcript.log:
                print(f"         {line}")
        for line in transcript.results:
            print(f"         {line}")
    print("self-check passed" if not failures else f"self-check FAILED on {failures} transport(s)")
    return 1 if failures else 0


def _cmd_up(args: argparse.Namespace) -> int:
    print("mtlab up: the services (gateway, auth, messages, media, updates) arrive with the next issues;")
    print("until then `mtlab up` proves the protocol core works on this machine.\n")
    return _cmd_selfcheck(args)


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "crypto":
        from mtlab.bench.report import crypto_report

        return crypto_report(quick=args.quick)
    print(f"unknown benchmark {args.what!r}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtlab",
        description="mtlab: a teaching-sized, real MTProto messaging backend. Start here: `mtlab up`.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_selfcheck_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", choices=["trio", "asyncio"], default="trio", help="event loop (default trio)")
        p.add_argument("--legacy-rsa", action="store_true",
                       help="use the legacy RSA padding of older clients instead of RSA_PAD")
        p.add_argument("-v", "--verbose", action="store_true", help="print both sides' protocol log")

    up = sub.add_parser("up", help="start the stack (for now: the protocol self-check)",
                        description="Start the mtlab stack. Until the services exist, runs the self-check.")
    add_selfcheck_options(up)
    up.set_defaults(func=_cmd_up)

    check = sub.add_parser("selfcheck", help="handshake + encrypted RPCs over every transport, in-process",
                           description="Run a full auth-key handshake and encrypted exchange between an "
                           "in-process client and server over every transport, and print what happened.")
    add_selfcheck_options(check)
    check.set_defaults(func=_cmd_selfcheck)

    bench = sub.add_parser("bench", help="measure and print performance figures",
                           description="Benchmarks print figures next to a baseline measured in the same run.")
    bench.add_argument("what", choices=["crypto"], help="crypto: IGE, message encryption, handshake cost")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions (noisier, for smoke tests)")
    bench.set_defaults(func=_cmd_bench)
    add_roles_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
