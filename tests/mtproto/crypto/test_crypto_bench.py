"""mtlab.bench.crypto runs and returns figures of the promised shape. Timings are never asserted."""

from __future__ import annotations

import math

from mtlab.bench import crypto as bench


def test_ige_throughput_rows() -> None:
    rows = bench.ige_throughput(budget=0.002, sizes=(1024, 4096))
    paths = {row.path for row in rows}
    # `mtlab bench crypto` picks rows by these words ("fast" + "enc", "raw" + "enc").
    assert paths == {
        "raw cryptg encrypt",
        "raw cryptg decrypt",
        "fast encrypt",
        "fast decrypt",
        "reference encrypt",
        "reference decrypt",
    }
    assert {row.size for row in rows} == {1024, 4096}
    assert all(math.isfinite(row.mb_per_s) and row.mb_per_s > 0 for row in rows)


def test_raw_gmp_handshake_cost_is_seconds() -> None:
    cost = bench.raw_gmp_handshake_cost(budget=0.0)
    assert 0 < cost < 60


def test_message_roundtrip_us() -> None:
    enc_us, dec_us = bench.message_roundtrip_us(budget=0.002)
    assert enc_us > 0 and dec_us > 0
