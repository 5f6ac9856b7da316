"""Diffie-Hellman for the auth key: parameters, checks, secrets, public values and the shared key.

Spec: core.telegram.org/mtproto/auth_key, steps 6-8 (server_DH_inner_data's g, dh_prime, g_a; the client's g_b;
``auth_key = pow(g, ab) mod dh_prime``) and core.telegram.org/mtproto/security_guidelines, "Validation of DH
parameters" and "g_a and g_b validation", whose checks are all here:

- dh_prime is a safe 2048-bit prime: 2^2047 < p < 2^2048, p prime and (p-1)/2 prime;
- g is 2..7 and generates the cyclic subgroup of prime order (p-1)/2, i.e. is a quadratic residue mod p, which
  quadratic reciprocity turns into a condition on p: p mod 8 = 7 for g = 2; p mod 3 = 2 for g = 3; none for
  g = 4; p mod 5 = 1 or 4 for g = 5; p mod 24 = 19 or 23 for g = 6; p mod 7 = 3, 5 or 6 for g = 7;
- g, g_a and g_b are greater than 1 and less than p - 1, and (recommended) g_a and g_b lie between 2^(2048-64)
  and p - 2^(2048-64).

Who is to blame when a check fails decides the error: a value the peer sent raises ``RemoteProtocolError``
(-404), our own configuration raises ``LocalProtocolError``.

Big numbers are Python ints at the interface; gmpy2 (GMP) does the exponentiations, about 2.5 ms each for a
2048-bit exponent here against about 17 ms for Python's ``pow``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import gmpy2  # type: ignore[import-untyped, unused-ignore]

from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode

__all__ = [
    "DEFAULT_DH_PRIME",
    "DEFAULT_G",
    "check_dh_params",
    "check_dh_value",
    "dh_public",
    "dh_secret",
    "dh_shared",
    "dh_value_ok",
    "validate_dh_config",
]

RandBytes = Callable[[int], bytes]

DH_BITS = 2048
DH_SIZE = DH_BITS // 8

# Telegram's current dh_prime, published in big-endian byte order on core.telegram.org/mtproto/auth_key (step 6)
# and /mtproto/security_guidelines ("Validation of DH parameters"), and used with g = 3 in the worked example
# of /mtproto/samples-auth_key. Clients that embed it as a known-good prime skip the slow primality tests.
DEFAULT_DH_PRIME = int(
    "C71CAEB9C6B1C9048E6C522F70F13F73980D40238E3E21C14934D037563D930F"
    "48198A0AA7C14058229493D22530F4DBFA336F6E0AC925139543AED44CCE7C37"
    "20FD51F69458705AC68CD4FE6B6B13ABDC9746512969328454F18FAF8C595F64"
    "2477FE96BB2A941D5BCD1D4AC8CC49880708FA9B378E3C4F3A9060BEE67CF9A4"
    "A4A695811051907E162753B56B0F6B410DBA74D8A84B2A14B3144E0EF1284754"
    "FD17ED950D5965B4B9DD46582DB1178D169C6BC465B0D6FF9CA3928FEF5B9AE4"
    "E418FC15E83EBEA0F87FA9FF5EED70050DED2849F47BF959D956850CE929851F"
    "0D8115F635B105EE2E4E15D04B2454BF6F4FADF034B10403119CD8E3B92FCC5B",
    16,
)
DEFAULT_G = 3

# Miller-Rabin rounds for the safe-prime test. The spec accepts 15 as a first pass (error below one in a
# billion); GMP also runs a Baillie-PSW test first, and the result is cached, so a generous count costs once.
_PRIME_ROUNDS = 50

_SAFETY_MARGIN = 1 << (DH_BITS - 64)  # 2^(2048-64), the recommended distance of g_a, g_b from 0 and p


def _quadratic_residue_condition(g: int, p: int) -> bool:
    """The spec's per-g condition that g is a quadratic residue modulo the safe prime p."""
    if g == 2:
        return p % 8 == 7
    if g == 3:
        return p % 3 == 2
    if g == 4:
        return True  # 4 = 2^2 is a square modulo anything
    if g == 5:
        return p % 5 in (1, 4)
    if g == 6:
        return p % 24 in (19, 23)
    if g == 7:
        return p % 7 in (3, 5, 6)
    return False


@lru_cache(maxsize=16)
def _is_safe_prime(p: int) -> bool:
    # The slow part (about 0.15 s for a 2048-bit p); servers change dh_prime rarely, so, as the spec suggests,
    # the answer is cached per prime.
    return bool(gmpy2.is_prime(p, _PRIME_ROUNDS)) and bool(gmpy2.is_prime((p - 1) // 2, _PRIME_ROUNDS))


def _dh_params_problem(g: int, dh_prime: int) -> str | None:
    if not 1 << (DH_BITS - 1) < dh_prime < 1 << DH_BITS:
        return f"dh_prime is not a 2048-bit number ({dh_prime.bit_length()} bits)"
    if g not in range(2, 8):
        return f"g = {g} is not one of 2..7"
    if not _quadratic_residue_condition(g, dh_prime):
        return f"g = {g} does not generate the subgroup of order (p-1)/2 for this dh_prime"
    if not _is_safe_prime(dh_prime):
        return "dh_prime is not a safe prime (p and (p-1)/2 must both be prime)"
    return None


def check_dh_params(g: int, dh_prime: int) -> None:
    """Check DH parameters received from the peer (the client's check of server_DH_inner_data).

    Raises ``RemoteProtocolError`` (-404) naming the failed condition.
    """
    problem = _dh_params_problem(g, dh_prime)
    if problem is not None:
        raise RemoteProtocolError(f"bad DH parameters: {problem}", TransportErrorCode.NOT_FOUND)


def validate_dh_config(g: int, dh_prime: int) -> None:
    """Check the server's own configured DH parameters; the same checks, raising ``LocalProtocolError``."""
    problem = _dh_params_problem(g, dh_prime)
    if problem is not None:
        raise LocalProtocolError(f"bad DH configuration: {problem}")


def dh_value_ok(value: int, dh_prime: int) -> bool:
    """Whether g_a or g_b is acceptable: 1 < v < p - 1 and 2^(2048-64) <= v <= p - 2^(2048-64).

    The first pair is the spec's requirement (it excludes the values that pin the shared key to 1 or +-1), the
    second its recommendation (it keeps the value far from the ends where small-subgroup and related tricks
    live). For a 2048-bit p the second implies the first; both are written out to match the spec.
    """
    return 1 < value < dh_prime - 1 and _SAFETY_MARGIN <= value <= dh_prime - _SAFETY_MARGIN


def check_dh_value(value: int, dh_prime: int) -> None:
    """Check a g_a or g_b received from the peer; raises ``RemoteProtocolError`` (-404) if it is out of range."""
    if not dh_value_ok(value, dh_prime):
        raise RemoteProtocolError(
            "DH value outside 2^(2048-64) .. dh_prime - 2^(2048-64)", TransportErrorCode.NOT_FOUND
        )


def dh_secret(randbytes: RandBytes) -> int:
    """A secret exponent (a or b): a 2048-bit number from 256 caller-supplied random bytes.

    The bytes must come from a CSPRNG (security_guidelines: "Using secure pseudorandom number generator to
    create DH secret parameters"); mtproto never draws them itself so that tests can replay a handshake.
    """
    raw = randbytes(DH_SIZE)
    if len(raw) != DH_SIZE:
        raise LocalProtocolError(f"randbytes({DH_SIZE}) returned {len(raw)} bytes")
    return int.from_bytes(raw, "big")


def dh_public(g: int, secret: int, dh_prime: int) -> int:
    """Our public value g_a (or g_b) = g^secret mod dh_prime.

    The caller should check the result with :func:`dh_value_ok` and draw a new secret in the (astronomically
    unlikely) case it fails, since the peer will apply the same range check.

    Plain ``powmod``, not the constant-time ``powmod_sec``: the exponent is ephemeral and used in one
    exponentiation per handshake side, so a timing observer gets one sample per secret, nothing to average.
    The long-lived RSA key is the one that needs the constant-time version (see rsa.py).
    """
    return int(gmpy2.powmod(g, secret, dh_prime))


def dh_shared(value: int, secret: int, dh_prime: int) -> bytes:
    """The auth key: ``value^secret mod dh_prime`` as 256 big-endian bytes (left-padded with zeros).

    ``value`` is the peer's g_b (on the server) or g_a (on a client); it is checked first, so a bad one raises
    ``RemoteProtocolError`` (-404) before any key is derived from it.
    """
    check_dh_value(value, dh_prime)
    return int(gmpy2.powmod(value, secret, dh_prime)).to_bytes(DH_SIZE, "big")
