"""Tests of mtproto.tl: schemas, generator, runtime (a package so the test modules share ``_strategies``)."""
