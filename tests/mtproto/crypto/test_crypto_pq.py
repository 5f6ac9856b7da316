"""The proof of work: the server's pq and the client's factorisation, through cryptg and the pure fallback."""

from __future__ import annotations

import random
from collections.abc import Callable

import crypto_vectors as v
import gmpy2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtproto.crypto.pq import factorize_pq, factorize_pq_reference, generate_pq
from mtproto.errors import RemoteProtocolError, TransportErrorCode

FACTORIZERS = [factorize_pq, factorize_pq_reference]
Factorizer = Callable[[int], tuple[int, int]]


@pytest.mark.parametrize("factorize", FACTORIZERS)
def test_telegram_sample_pq(factorize: Factorizer) -> None:
    # samples-auth_key step 3: 2694724800268887959 = 1513098571 * 1780931429.
    assert factorize(v.PQ) == (v.P, v.Q)


@given(seed=st.integers())
def test_generated_pq_has_the_promised_shape(seed: int) -> None:
    pq, p, q = generate_pq(random.Random(seed).randbytes)
    assert pq == p * q
    assert p < q
    assert gmpy2.is_prime(p) and gmpy2.is_prime(q)
    assert 1 << 30 <= p < q < 1 << 31  # each fits exactly 4 bytes
    assert pq < 1 << 63  # fits a signed long


@settings(max_examples=30, deadline=None)
@given(seed=st.integers())
def test_generated_pq_factors_back(seed: int) -> None:
    pq, p, q = generate_pq(random.Random(seed).randbytes)
    assert factorize_pq(pq) == (p, q)
    assert factorize_pq_reference(pq) == (p, q)


@pytest.mark.parametrize("byte", [0x00, 0xFF, 0x7F])
def test_constant_randbytes_still_gives_two_distinct_primes(byte: int) -> None:
    # A degenerate randbytes draws the same start twice; generate_pq must still end, with p != q.
    pq, p, q = generate_pq(lambda n: bytes([byte]) * n)
    assert p < q and p * q == pq and gmpy2.is_prime(p) and gmpy2.is_prime(q)
    assert q < 1 << 31


@settings(max_examples=40, deadline=None)
@given(bits_p=st.integers(2, 32), bits_q=st.integers(2, 32), seed=st.integers())
def test_reference_factorizer_on_primes_of_any_size(bits_p: int, bits_q: int, seed: int) -> None:
    rng = random.Random(seed)
    p = int(gmpy2.next_prime(rng.getrandbits(bits_p)))
    q = int(gmpy2.next_prime(rng.getrandbits(bits_q)))
    if p == q or p * q >= 1 << 64:
        return
    expected = (min(p, q), max(p, q))
    assert factorize_pq_reference(p * q) == expected
    assert factorize_pq(p * q) == expected


def test_small_pq_where_cryptg_panics_uses_the_fallback() -> None:
    # cryptg 0.6 raises a Rust panic (pyo3 PanicException, a BaseException) for 15.
    assert factorize_pq(15) == (3, 5)


@pytest.mark.parametrize(
    "pq",
    [
        pytest.param(0, id="zero"),
        pytest.param(1, id="one"),
        pytest.param(7, id="small-prime"),
        pytest.param(9, id="square-of-3"),  # cryptg 0.6 loops forever on this one
        pytest.param((1 << 61) - 1, id="mersenne-prime"),  # ... and on primes
        pytest.param(2147483647 * 2147483647, id="square"),
        pytest.param(3 * 5 * 7, id="three-primes"),
        pytest.param(27, id="cube"),
        pytest.param(1513098571 * 1780931429 * 3, id="three-primes-large"),
        pytest.param(1 << 64, id="too-big"),
        pytest.param((1 << 64) + 13, id="above-2^64"),
    ],
)
@pytest.mark.parametrize("factorize", FACTORIZERS)
def test_bad_pq_is_a_remote_error(factorize: Factorizer, pq: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        factorize(pq)
    assert info.value.transport_error is TransportErrorCode.NOT_FOUND
