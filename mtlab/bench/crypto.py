"""Measurements of ``mtproto.crypto``: plain functions that return figures (``mtlab bench crypto`` prints them).

Method, the same for every figure: a measurement is a run of back-to-back calls timed with
``time.perf_counter``; each figure gets a time budget (about 0.3 s) split into several runs, and reports the
best run (throughput: the least disturbed by other work on a shared machine) or, where a single call is long
and varies, the median. Paths that are compared with each other are measured in alternating runs so that a
burst of noise hits them alike. Nothing here asserts a speed: the caller decides what a figure means.

This module is outside the sans-IO core, so it draws its own random inputs from ``os.urandom``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import cryptg
import gmpy2  # type: ignore[import-untyped, unused-ignore]

from mtproto.crypto import dh, rsa
from mtproto.crypto.ige import (
    ige256_decrypt,
    ige256_decrypt_reference,
    ige256_encrypt,
    ige256_encrypt_reference,
)
from mtproto.crypto.message import decrypt_message, encrypt_message

__all__ = ["IgeRow", "ige_throughput", "message_roundtrip_us", "raw_gmp_handshake_cost"]

DEFAULT_BUDGET = 0.3  # seconds per figure
RUNS = 5
IGE_SIZES = (1024, 64 * 1024, 1024 * 1024)

_raw_encrypt: Callable[[bytes, bytes, bytes], bytes] = cryptg.encrypt_ige
_raw_decrypt: Callable[[bytes, bytes, bytes], bytes] = cryptg.decrypt_ige


class IgeRow(NamedTuple):
    path: str
    size: int  # bytes per call
    mb_per_s: float  # 10^6 bytes per second


def _calls_per_run(fn: Callable[[], object], run_seconds: float) -> int:
    """How many back-to-back calls fill about ``run_seconds`` (at least one)."""
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - started
        if elapsed >= run_seconds / 4 or calls >= 1 << 20:
            return max(1, int(calls * run_seconds / max(elapsed, 1e-9)))
        calls *= 4


def _best_seconds_per_call(fns: Sequence[Callable[[], object]], budget: float, runs: int = RUNS) -> list[float]:
    """Best time per call of each function, measured in alternating runs that share ``budget`` seconds."""
    run_seconds = budget / (runs * len(fns))
    counts = [_calls_per_run(fn, run_seconds) for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(runs):
        for i, (fn, calls) in enumerate(zip(fns, counts, strict=True)):
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            best[i] = min(best[i], (time.perf_counter() - started) / calls)
    return best


def ige_throughput(budget: float = DEFAULT_BUDGET, sizes: Sequence[int] = IGE_SIZES) -> list[IgeRow]:
    """AES-256-IGE throughput in MB/s, per path and size: rows ``(path, size, MB/s)``.

    Paths: ``raw cryptg encrypt/decrypt`` (cryptg called directly: the ceiling), ``fast encrypt/decrypt``
    (``ige256_encrypt``/``ige256_decrypt``: cryptg behind mtproto's checks) and ``reference encrypt/decrypt``
    (the ``cryptography``-based path). ``budget`` seconds go to each (path, size) figure.
    """
    key, iv = os.urandom(32), os.urandom(32)
    rows: list[IgeRow] = []
    for size in sizes:
        plain = os.urandom(size - size % 16)
        cipher = ige256_encrypt(plain, key, iv)
        paths: list[tuple[str, Callable[[], object]]] = [
            ("raw cryptg encrypt", partial(_raw_encrypt, plain, key, iv)),
            ("fast encrypt", partial(ige256_encrypt, plain, key, iv)),
            ("raw cryptg decrypt", partial(_raw_decrypt, cipher, key, iv)),
            ("fast decrypt", partial(ige256_decrypt, cipher, key, iv)),
            ("reference encrypt", partial(ige256_encrypt_reference, plain, key, iv)),
            ("reference decrypt", partial(ige256_decrypt_reference, cipher, key, iv)),
        ]
        # Raw and fast are compared with each other, so each pair shares alternating runs.
        timings: dict[str, float] = {}
        for pair in (paths[0:2], paths[2:4], paths[4:5], paths[5:6]):
            seconds = _best_seconds_per_call([fn for _, fn in pair], budget * len(pair))
            timings.update({name: s for (name, _), s in zip(pair, seconds, strict=True)})
        rows.extend(IgeRow(name, len(plain), len(plain) / timings[name] / 1e6) for name, _ in paths)
    return rows


def raw_gmp_handshake_cost(budget: float = DEFAULT_BUDGET) -> float:
    """Seconds of the unavoidable big-number work of one server handshake, the median of repeated runs.

    One RSA-2048 private operation (two CRT exponentiations with ``gmpy2.powmod_sec``, the constant-time
    routine ``rsa_private_raw`` uses) plus two 2048-bit modular exponentiations with a 2048-bit exponent
    (``gmpy2.powmod``: g_a = g^a and auth_key = g_b^a). The baseline a full server handshake is compared with.
    """
    key = rsa.generate_rsa_key()
    p, q, dp, dq = (gmpy2.mpz(v) for v in (key.p, key.q, key.dp, key.dq))
    prime, g = gmpy2.mpz(dh.DEFAULT_DH_PRIME), gmpy2.mpz(dh.DEFAULT_G)
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < 3 or time.perf_counter() < deadline:
        c = gmpy2.mpz(int.from_bytes(os.urandom(256), "big") % key.n)
        a = gmpy2.mpz(int.from_bytes(os.urandom(256), "big"))
        g_b = gmpy2.mpz(int.from_bytes(os.urandom(256), "big") % prime)
        started = time.perf_counter()
        gmpy2.powmod_sec(c, dp, p)
        gmpy2.powmod_sec(c, dq, q)
        gmpy2.powmod(g, a, prime)
        gmpy2.powmod(g_b, a, prime)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def message_roundtrip_us(budget: float = DEFAULT_BUDGET) -> tuple[float, float]:
    """Microseconds to encrypt and to decrypt one 1 KiB message through the envelope, KDF included.

    ``encrypt_message`` (msg_key, key and iv derivation, auth_key_id, AES-256-IGE) and ``decrypt_message``
    (the same plus the msg_key check) on a 1024-byte plaintext_with_padding; best of several runs each.
    """
    auth_key = os.urandom(256)
    plaintext = os.urandom(1024)
    sealed = encrypt_message(auth_key, plaintext, from_client=True)
    enc, dec = _best_seconds_per_call(
        [
            partial(encrypt_message, auth_key, plaintext, from_client=True),
            partial(decrypt_message, auth_key, sealed, from_client=True),
        ],
        budget * 2,
    )
    return enc * 1e6, dec * 1e6
