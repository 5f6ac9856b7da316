"""The handshake's proof of work: the server's pq = p * q and the client's factorisation of it.

Spec: core.telegram.org/mtproto/auth_key, step 2 ("pq is a representation of a natural number (in binary big
endian format). This number is the product of two different odd prime numbers. Normally, pq is less than or
equal to 2^63-1") and step 3 ("Client decomposes pq into prime factors such that p < q").

Sizes: Telegram's factors are about 2^31 (the worked example on /mtproto/samples-auth_key has
p = 1513098571, q = 1780931429), and several client libraries encode p and q in exactly 4 bytes, so
:func:`generate_pq` draws both from [2^30, 2^31): each fits 4 bytes, and pq < 2^62 fits a signed long.
"""

from __future__ import annotations

from collections.abc import Callable

import cryptg
import gmpy2  # type: ignore[import-untyped, unused-ignore]

from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode

__all__ = ["factorize_pq", "factorize_pq_reference", "generate_pq"]

RandBytes = Callable[[int], bytes]

_LOW = 1 << 30
_HIGH = 1 << 31  # exclusive; 2^31 - 1 is itself prime, so next_prime below it never crosses it
_MAX_PQ = 1 << 64  # pq travels as a string, but the spec keeps it to a long; refuse to factor anything bigger

_cryptg_factorize: Callable[[int], tuple[int, int]] = cryptg.factorize_pq_pair


def _prime_in_range(randbytes: RandBytes) -> int:
    raw = randbytes(4)
    if len(raw) != 4:
        raise LocalProtocolError(f"randbytes(4) returned {len(raw)} bytes")
    # Start at a random point of [2^30, 2^31 - 2] and take the next prime. That favours primes after long gaps
    # a little, which is harmless for a proof of work, and, unlike drawing until a prime turns up, always ends
    # even with a constant randbytes in a test.
    start = _LOW + int.from_bytes(raw, "big") % (_HIGH - 1 - _LOW)
    return int(gmpy2.next_prime(start))


def generate_pq(randbytes: RandBytes) -> tuple[int, int, int]:
    """Server side: ``(pq, p, q)`` with p < q distinct primes in [2^30, 2^31) (see module doc)."""
    p = _prime_in_range(randbytes)
    q = _prime_in_range(randbytes)
    if q == p:
        # A repeat is rare with real randomness; step to a neighbouring prime rather than drawing again.
        above = int(gmpy2.next_prime(p))
        q = above if above < _HIGH else int(gmpy2.prev_prime(p))
    p, q = min(p, q), max(p, q)
    return p * q, p, q


def _pollard_brent(n: int, c: int) -> int:
    """One run of Pollard's rho with Brent's cycle finding on f(y) = y^2 + c mod n; returns a divisor of n.

    The result may be n itself (this c failed; the caller tries another). Products of the |x - y| values are
    batched ``batch`` at a time so that one gcd serves many steps.
    """
    mn, mc = gmpy2.mpz(n), gmpy2.mpz(c)
    y, x, ys = gmpy2.mpz(2), gmpy2.mpz(2), gmpy2.mpz(2)
    r, acc, g = 1, gmpy2.mpz(1), gmpy2.mpz(1)
    batch = 128
    while g == 1:
        x = y
        for _ in range(r):
            y = (y * y + mc) % mn
        k = 0
        while k < r and g == 1:
            ys = y
            for _ in range(min(batch, r - k)):
                y = (y * y + mc) % mn
                acc = (acc * abs(x - y)) % mn
            g = gmpy2.gcd(acc, mn)
            k += batch
        r *= 2
    if g == mn:
        # The batch overshot (the product hit 0 mod n); replay it one step at a time from the saved point.
        g = gmpy2.mpz(1)
        while g == 1:
            ys = (ys * ys + mc) % mn
            g = gmpy2.gcd(abs(x - ys), mn)
    return int(g)


def _reject(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad resPQ pq: {reason}", TransportErrorCode.NOT_FOUND)


def _check_pq(pq: int) -> None:
    # Refuse what is not a product of two primes before factoring: cryptg's factoriser loops forever on a
    # prime and on some squares, and a server must not be able to hang its clients.
    if not 6 <= pq < _MAX_PQ:
        raise _reject(f"{pq} is outside 6 .. 2^64")
    if gmpy2.is_prime(pq):
        raise _reject(f"{pq} is prime")


def _checked(pq: int, a: int, b: int) -> tuple[int, int]:
    p, q = min(a, b), max(a, b)
    if p * q != pq or p == q or not gmpy2.is_prime(p) or not gmpy2.is_prime(q):
        raise _reject(f"{pq} is not a product of two different primes")
    return p, q


def factorize_pq_reference(pq: int) -> tuple[int, int]:
    """Client side, pure gmpy2: ``(p, q)`` with p < q; Pollard-Brent rho with deterministic constants.

    About 10-50 ms in Python for a 62-bit pq. Raises ``RemoteProtocolError`` (-404) if pq is not the product of
    two different primes below 2^64.
    """
    _check_pq(pq)
    if pq % 2 == 0:
        return _checked(pq, 2, pq // 2)
    root, exact = gmpy2.iroot(pq, 2)
    if exact:
        return _checked(pq, int(root), int(root))  # rejected (p == q), but with the right message
    for c in range(1, 100):
        d = _pollard_brent(pq, c)
        if 1 < d < pq:
            return _checked(pq, d, pq // d)
    raise _reject(f"could not factor {pq}")  # not reached for a composite below 2^64


def factorize_pq(pq: int) -> tuple[int, int]:
    """Client side: ``(p, q)`` with p < q, through cryptg's Rust factoriser, falling back to the reference.

    The input is screened first (see ``_check_pq``); cryptg reports some failures by a Rust panic, which
    surfaces as ``pyo3_runtime.PanicException``, a ``BaseException`` that cannot be imported by name, hence
    the name test below rather than a plain ``except``.
    """
    _check_pq(pq)
    if pq % 2 and not gmpy2.is_square(pq):
        try:
            a, b = _cryptg_factorize(pq)
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":
                raise
        else:
            if a * b == pq and 1 < a < pq:
                return _checked(pq, a, b)
    return factorize_pq_reference(pq)
