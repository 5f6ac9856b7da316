"""Diffie-Hellman: Telegram's example, the parameter checks and the value range checks of the spec."""

from __future__ import annotations

import random
from collections.abc import Callable

import crypto_vectors as v
import gmpy2
import pytest

from mtproto.crypto import dh
from mtproto.crypto.dh import (
    DEFAULT_DH_PRIME,
    DEFAULT_G,
    check_dh_params,
    check_dh_value,
    dh_public,
    dh_secret,
    dh_shared,
    dh_value_ok,
    validate_dh_config,
)
from mtproto.errors import LocalProtocolError, RemoteProtocolError, TransportErrorCode

P = DEFAULT_DH_PRIME
MARGIN = 1 << (2048 - 64)


def assert_remote(fn: Callable[..., object], *args: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        fn(*args)
    assert info.value.transport_error is TransportErrorCode.NOT_FOUND


# --- Telegram's published parameters and worked example ------------------------------------------------------


def test_default_parameters_are_telegrams_and_pass_every_check() -> None:
    assert P == v.DH_PRIME  # the dh_prime of samples-auth_key's server_DH_inner_data
    assert DEFAULT_G == v.G == 3
    check_dh_params(DEFAULT_G, P)
    validate_dh_config(DEFAULT_G, P)


def test_sample_g_b_and_auth_key() -> None:
    # samples-auth_key step 7 (g_b = pow(g, b) mod dh_prime) and step 8 (auth_key = g_a^b mod dh_prime).
    assert dh_public(v.G, v.B, v.DH_PRIME) == v.G_B
    assert dh_shared(v.G_A, v.B, v.DH_PRIME) == v.AUTH_KEY
    assert dh_value_ok(v.G_A, v.DH_PRIME) and dh_value_ok(v.G_B, v.DH_PRIME)


def test_both_sides_agree() -> None:
    rng = random.Random(11)
    a, b = dh_secret(rng.randbytes), dh_secret(rng.randbytes)
    g_a, g_b = dh_public(DEFAULT_G, a, P), dh_public(DEFAULT_G, b, P)
    key = dh_shared(g_b, a, P)
    assert key == dh_shared(g_a, b, P)
    assert len(key) == 256


def test_shared_key_is_left_padded_to_256_bytes() -> None:
    # g_b = 2^(2048-64) with secret 1 gives a value with 8 leading zero bytes; it must stay 256 bytes long.
    assert dh_shared(MARGIN, 1, P) == MARGIN.to_bytes(256, "big")


def test_secret_uses_256_random_bytes() -> None:
    assert dh_secret(lambda n: b"\x01" * n) == int.from_bytes(b"\x01" * 256, "big")
    with pytest.raises(LocalProtocolError):
        dh_secret(lambda n: bytes(n - 1))


# --- g_a / g_b range -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(0, id="zero"),
        pytest.param(1, id="one"),
        pytest.param(2, id="two-too-small"),
        pytest.param(MARGIN - 1, id="just-below-2^1984"),
        pytest.param(P - MARGIN + 1, id="just-above-p-2^1984"),
        pytest.param(P - 2, id="p-2"),
        pytest.param(P - 1, id="p-1"),
        pytest.param(P, id="p"),
        pytest.param(P + 1, id="above-p"),
    ],
)
def test_bad_dh_values_are_rejected(value: int) -> None:
    assert not dh_value_ok(value, P)
    assert_remote(check_dh_value, value, P)
    assert_remote(dh_shared, value, 12345, P)  # checked before any key is derived


@pytest.mark.parametrize("value", [MARGIN, P - MARGIN, P // 2])
def test_boundary_dh_values_are_accepted(value: int) -> None:
    assert dh_value_ok(value, P)
    check_dh_value(value, P)


# --- dh_prime and g --------------------------------------------------------------------------------------------


def test_g_must_be_a_quadratic_residue_for_telegrams_prime() -> None:
    # Euler's criterion decides independently of the spec's table: g generates the subgroup of order (p-1)/2
    # iff g^((p-1)/2) = 1 mod p. For this p that is g = 3, 4, 7.
    for g in range(2, 8):
        is_residue = pow(g, (P - 1) // 2, P) == 1
        if is_residue:
            check_dh_params(g, P)
        else:
            assert_remote(check_dh_params, g, P)
    assert [g for g in range(2, 8) if pow(g, (P - 1) // 2, P) == 1] == [3, 4, 7]


def test_spec_residue_table_matches_eulers_criterion_on_small_safe_primes() -> None:
    safe_primes = [p for p in range(11, 50_000, 2) if gmpy2.is_prime(p) and gmpy2.is_prime((p - 1) // 2)]
    assert len(safe_primes) > 100
    for p in safe_primes:
        for g in range(2, 8):
            assert dh._quadratic_residue_condition(g, p) == (pow(g, (p - 1) // 2, p) == 1), (g, p)


@pytest.mark.parametrize("g", [0, 1, 8, 9, -3])
def test_g_outside_2_to_7_is_rejected(g: int) -> None:
    assert_remote(check_dh_params, g, P)


def test_prime_that_is_not_safe_is_rejected() -> None:
    # A 2048-bit prime q for which (q-1)/2 is not prime; g = 4 so that only the safe-prime test can object.
    q = int(gmpy2.next_prime(P + 2))
    while gmpy2.is_prime((q - 1) // 2):
        q = int(gmpy2.next_prime(q))
    assert gmpy2.is_prime(q) and q.bit_length() == 2048
    assert_remote(check_dh_params, 4, q)


def test_composite_modulus_is_rejected() -> None:
    composite = P + 6  # passes the g = 3 residue condition (p mod 3 = 2) but is not prime
    assert composite % 3 == 2 and not gmpy2.is_prime(composite)
    assert_remote(check_dh_params, 3, composite)


@pytest.mark.parametrize("p", [1 << 2047, (1 << 2048) + 1, int(gmpy2.next_prime(1 << 1023))])
def test_prime_must_be_2048_bits(p: int) -> None:
    assert_remote(check_dh_params, 4, p)


def test_bad_local_configuration_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        validate_dh_config(2, P)
    with pytest.raises(LocalProtocolError):
        validate_dh_config(3, P + 6)
