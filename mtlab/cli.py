"""The `mtlab` command line: one entry point for students, teachers and scripts.

Subcommands print what they do; every one has ``--help``. ``mtlab up`` starts and supervises the stack
(``mtlab/supervisor.py``), ``status``, ``down`` and ``key`` work on a running one; ``selfcheck`` runs a full
handshake and encrypted exchange between an in-process client and server over every transport. ``codes``,
``demo`` and ``chat`` are clients of a running stack (``mtlab/stack.py``, ``demo.py``, ``chat.py``).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from mtlab.dbcli import add_db_commands
from mtlab.mediacli import add_media_commands
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


def _up_args(args: argparse.Namespace) -> list[str]:
    """The options of this `mtlab up`, spelled out for the supervisor that `--detach` starts in the background."""
    from mtlab.supervisor import port_options

    argv = ["--data-dir", str(Path(args.data_dir).absolute()), "--start-timeout", str(args.start_timeout),
            "--postgres-port", str(args.postgres_port), "--redis-port", str(args.redis_port)]
    for option, dest, _ in port_options():
        if getattr(args, dest) is not None:
            argv += [option, str(getattr(args, dest))]
    return argv


def _cmd_up(args: argparse.Namespace) -> int:
    import os

    from mtlab.supervisor import DETACHED_ENV, Supervisor, options_from, start_detached

    options = options_from(args)
    if args.detach:
        return start_detached(options, _up_args(args))
    return Supervisor(options, detached=os.environ.get(DETACHED_ENV) == "1").run()


def _cmd_down(args: argparse.Namespace) -> int:
    from mtlab.supervisor import down

    return down(Path(args.data_dir))


def _cmd_status(args: argparse.Namespace) -> int:
    from mtlab.supervisor import collect_status, format_status

    report = collect_status(Path(args.data_dir))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(format_status(report)))
    return 0 if report["healthy"] else 1


def _cmd_key(args: argparse.Namespace) -> int:
    from mtlab.supervisor import gateway_key
    from mtproto.crypto import rsa
    from services.gateway.keys import RSA_FILE

    data_dir = Path(args.data_dir).absolute()
    key, created = gateway_key(data_dir)
    print(rsa.public_pem_pkcs1(key).decode(), end="")
    if args.pem:
        return 0
    signed = rsa.fingerprint(key.n, key.e)
    print(f"key file     {data_dir / RSA_FILE} (the private key; {'created just now' if created else 'existing'})")
    print(f"fingerprint  {signed & (2**64 - 1):016x}  (unsigned 64-bit, hex)")
    print(f"             {signed}  (signed 64-bit: what Telethon's rsa._server_keys is keyed by)")
    print("Telethon:    from telethon.crypto import rsa; rsa.add_key(PEM, old=False)  (`mtlab key --pem` > key.pem)")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "crypto":
        from mtlab.bench.report import crypto_report

        return crypto_report(quick=args.quick)
    if args.what == "messages":
        from mtlab.bench.report import messages_report

        duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
        return messages_report(duration=duration, clients=args.clients, users=args.users, as_json=args.json)
    if args.what == "fanout":
        from mtlab.bench.report import fanout_report

        samples = args.samples if args.samples is not None else (50 if args.quick else 300)
        subscribers = args.subscribers if args.subscribers is not None else (2000 if args.quick else 10_000)
        return fanout_report(samples=samples, load_clients=args.clients, subscribers=subscribers,
                             connections=args.connections, as_json=args.json)
    if args.what == "media":
        from mtlab.bench.media import media_report

        runs = args.runs if args.runs is not None else 1 if args.quick else 3
        if runs < 1:
            print("mtlab bench media: --runs must be at least 1", file=sys.stderr)
            return 2
        return media_report(size=(8 if args.quick else 30) * 1024 * 1024, runs=runs, as_json=args.json)
    print(f"unknown benchmark {args.what!r}", file=sys.stderr)
    return 2


def _running_stack(args: argparse.Namespace) -> Any:
    """The stack of ``--data-dir``, or None after saying why there is none (on stderr)."""
    from mtlab.stack import find

    found = find(Path(args.data_dir))
    if isinstance(found, str):
        print(f"mtlab {args.command}: {found}", file=sys.stderr)
        return None
    return found


def _cmd_codes(args: argparse.Namespace) -> int:
    from mtlab.stack import code_attempts, format_codes, pending_codes

    stack = _running_stack(args)
    if stack is None:
        return 1
    codes = anyio.run(pending_codes, stack.redis_url)
    attempts = code_attempts()
    if args.json:
        print(json.dumps([{"phone": c.phone, "code": c.code, "expires_in": c.expires_in,
                           "attempts_left": max(attempts - c.attempts, 0)} for c in codes], indent=2))
    else:
        print("\n".join(format_codes(codes, attempts)))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mtlab.demo import demo

    stack = _running_stack(args)
    if stack is None:
        return 1
    result: int = anyio.run(demo, stack)
    return result


def _cmd_chat(args: argparse.Namespace) -> int:
    from mtlab import chat
    from mtproto.transport import TransportKind

    stack = _running_stack(args)
    if stack is None:
        return 1
    options = chat.ChatOptions(phone=args.phone, code=args.code, name=args.name,
                               transport=TransportKind(args.transport), obfuscated=args.obfuscated or args.websocket,
                               websocket=args.websocket, poll=args.poll, downloads=args.downloads)
    if options.obfuscated and options.transport is TransportKind.FULL:
        print("mtlab chat: the full transport has no obfuscated form (and WebSocket needs one)", file=sys.stderr)
        return 2
    if options.websocket and not stack.gateway_ws_port:
        print("mtlab chat: the running stack does not say where its WebSocket port is", file=sys.stderr)
        return 2
    return chat.run(stack, options)


def _add_client_commands(sub: Any, add_data_dir: Any) -> None:
    codes = sub.add_parser("codes", help="the login codes waiting to be typed (the simulated SMS)",
                           description="List the pending login codes of the running stack, read from its Redis: "
                           "phone number, code, seconds until it expires, wrong guesses it still allows. "
                           "Exits 1 when no stack runs.")
    add_data_dir(codes)
    codes.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    codes.set_defaults(func=_cmd_codes)

    demo = sub.add_parser("demo", help="two users sign up or in over two transports and message each other",
                          description="Against the running stack, with mtlab's client SDK: Alice (+9996610001, "
                          "abridged) and Bob (+9996620002, obfuscated intermediate) each connect and sign up (or "
                          "in, on later runs); Alice finds Bob by his number (contacts.importContacts) and sends "
                          "him two messages, Bob replies and reads them, Alice edits one, and Bob's side of the "
                          "chat is printed. Prints who did what, over which transport, what came back, and "
                          "timings. Each run sends each number a code: "
                          "more than MTLAB_AUTH_CODES_PER_PHONE (5) runs in 10 minutes meet FLOOD_WAIT.")
    add_data_dir(demo)
    demo.set_defaults(func=_cmd_demo)

    chat = sub.add_parser("chat", help="an interactive client: sign in, then /add, /to, messages, /history...",
                          description="Sign in to the running stack (the code is asked for on stdin unless "
                          "--code gives it; test numbers 99966XYYYY get X five times), then read commands, one "
                          "a line: /add PHONE, /contacts, /to PHONE|@username|NAME, /dialogs, /history, /edit, "
                          "/delete, /read, /search, photos and files with /photo PATH [caption], /file PATH "
                          "[caption], /save ID, then /me, /sessions, /revoke, /config, /ping, /help, /quit, and for "
                          "end-to-end encrypted secret chats /secret NAME|PHONE, /accept ID, /s TEXT, /sfile PATH, "
                          "/close [ID], /secrets (/help says more). Any other line is a message to the chosen peer; "
                          "messages that arrive are printed as they come (pushed; gaps filled with "
                          "updates.getDifference), with what they carry (a photo's size, a file's name, size and "
                          "type); /save ID downloads a message's photo or file into the --downloads folder, and a "
                          "file that arrives in a secret chat is decrypted and saved there at once; the line names "
                          "the path. Works without a terminal (lines from a pipe); the end of input quits.")
    add_data_dir(chat)
    chat.add_argument("--phone", metavar="NUMBER", help="the phone number to sign in with (asked for if missing)")
    chat.add_argument("--code", metavar="DIGITS", help="the login code (asked for on stdin if missing)")
    chat.add_argument("--name", metavar="'FIRST [LAST]'",
                      help="the name of a new account (default 'User NNNN', from the number's last digits)")
    chat.add_argument("--transport", choices=[k.value for k in TransportKind], default="intermediate",
                      help="the MTProto framing (default intermediate)")
    chat.add_argument("--obfuscated", action="store_true",
                      help="wrap the transport in obfuscated2 (not with full)")
    chat.add_argument("--websocket", action="store_true",
                      help="connect to the gateway's WebSocket port (MTProto in binary messages on /apiws, as web "
                      "clients do); implies --obfuscated")
    chat.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                      help="0: do not show incoming messages; any other value (default 1): show them as they "
                      "arrive (kept for scripts: messages are pushed, not polled)")
    chat.add_argument("--downloads", type=Path, metavar="DIR",
                      help="where /save ID and files that arrive in secret chats are saved (default: downloads/ in "
                      "the data directory, e.g. .mtlab/downloads); a name already there gets ' (1)' added, never "
                      "overwritten")
    chat.set_defaults(func=_cmd_chat)


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

    from mtlab.supervisor import port_options

    def add_data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=None, metavar="DIR",
                       help="where the stack keeps its data, logs and state (default $MTLAB_DATA_DIR, else .mtlab "
                       "in the current directory)")

    up = sub.add_parser("up", help="start the stack (Postgres, Redis, every service) and supervise it",
                        description="Start Postgres and Redis (or use MTLAB_POSTGRES_DSN / MTLAB_REDIS_URL), then "
                        "every service as its own process; wait until each answers /healthz; print the endpoints; "
                        "restart a service that crashes. Ctrl-C (or `mtlab down` for --detach) stops everything.")
    add_data_dir(up)
    for option, dest, text in port_options():
        up.add_argument(option, dest=dest, type=int, default=None, metavar="PORT", help=text)
    up.add_argument("--postgres-port", type=int, default=0, metavar="PORT",
                    help="port of mtlab's own Postgres (default 0: a free port; unused with MTLAB_POSTGRES_DSN)")
    up.add_argument("--redis-port", type=int, default=0, metavar="PORT",
                    help="port of mtlab's own Redis (default 0: a free port; unused with MTLAB_REDIS_URL)")
    up.add_argument("--start-timeout", type=float, default=30.0, metavar="SECONDS",
                    help="how long each service may take to answer /healthz (default 30)")
    up.add_argument("--detach", action="store_true",
                    help="run the supervisor in the background; return once everything is healthy")
    up.set_defaults(func=_cmd_up)

    down = sub.add_parser("down", help="stop a stack started with `mtlab up` (detached or in another terminal)",
                          description="Stop every service, then the Postgres and Redis that `mtlab up` started. "
                          "Says so when nothing runs.")
    add_data_dir(down)
    down.set_defaults(func=_cmd_down)

    status = sub.add_parser("status", help="every endpoint of the running stack and its health",
                            description="Ask every service's /healthz and Postgres and Redis themselves, now. "
                            "Exits 1 when anything is down or nothing runs.")
    add_data_dir(status)
    status.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")
    status.set_defaults(func=_cmd_status)

    key = sub.add_parser("key", help="the gateway's RSA public key (PKCS#1 PEM) and its fingerprint",
                         description="Print the public half of the RSA key the gateway signs the handshake with, "
                         "for a client to pin, with its fingerprint. Creates the key if the data directory has none.")
    add_data_dir(key)
    key.add_argument("--pem", action="store_true", help="print the PEM only (to redirect into a file)")
    key.set_defaults(func=_cmd_key)

    check = sub.add_parser("selfcheck", help="handshake + encrypted RPCs over every transport, in-process",
                           description="Run a full auth-key handshake and encrypted exchange between an "
                           "in-process client and server over every transport, and print what happened.")
    add_selfcheck_options(check)
    check.set_defaults(func=_cmd_selfcheck)

    bench = sub.add_parser("bench", help="measure and print performance figures",
                           description="Benchmarks print figures next to a baseline measured in the same run.")
    bench.add_argument("what", choices=["crypto", "messages", "media", "fanout"],
                       help="crypto: IGE, message encryption, handshake cost; messages: private messages per second "
                       "through the message service (in-process, over internal RPC, through the gateway) next to "
                       "pgbench doing the same writes, send latency p50/p99; media: upload, store and download MB/s of "
                       "a 30 MiB file through the gateway next to raw IGE, the CPU each process spent, peak RSS of "
                       "the media service and gateway; "
                       "fanout: live push through the whole stack, send-to-receive latency p50/p99 between two "
                       "online users at idle and under load, and a channel post to 10,000 online subscriber "
                       "sessions (time until the last has it, gateway and updates service CPU)")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions (noisier, for smoke tests); messages: "
                       "3 s phases; media: an 8 MiB file, one run; fanout: 50 samples, 2000 subscribers")
    bench.add_argument("--runs", type=int, default=None, metavar="N",
                       help="media: round trips of the file; the best and the median are reported (default 3)")
    bench.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                       help="messages: seconds each phase measures (default 10)")
    bench.add_argument("--clients", type=int, default=16, metavar="N",
                       help="messages: concurrent senders in every phase; fanout: SDK clients sending to each other "
                       "during the loaded latency samples (default 16)")
    bench.add_argument("--users", type=int, default=1000, metavar="N",
                       help="messages: users the senders write to (default 1000; the gateway phase signs up one "
                       "user per client)")
    bench.add_argument("--samples", type=int, default=None, metavar="N",
                       help="fanout: messages timed at idle, and again under load (default 300)")
    bench.add_argument("--subscribers", type=int, default=None, metavar="N",
                       help="fanout: online sessions the channel post reaches, one user and auth key each, written "
                       "straight into the run's databases (default 10000)")
    bench.add_argument("--connections", type=int, default=100, metavar="N",
                       help="fanout: TCP connections carrying the subscribers' sessions (default 100)")
    bench.add_argument("--json", action="store_true",
                       help="messages, media, fanout: print JSON for scripts instead of the report")
    bench.set_defaults(func=_cmd_bench)
    _add_client_commands(sub, add_data_dir)
    add_roles_command(sub)
    add_db_commands(sub, add_data_dir)
    add_media_commands(sub, add_data_dir)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from services.common.memory import tune_allocator

    tune_allocator()  # the SDK's file transfers make big buffers too (services/common/memory.py)
    args = build_parser().parse_args(argv)
    if getattr(args, "data_dir", "unset") is None:
        from mtlab.supervisor import default_data_dir

        args.data_dir = str(default_data_dir())
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
