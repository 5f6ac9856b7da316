"""TL, the Type Language of MTProto (core.telegram.org/mtproto/TL): schemas, generator, runtime.

- ``schema/*.tl`` are the source of truth; ``generator.py`` turns them into the committed packages
  ``mt`` (the MTProto service schema) and ``api`` (the pinned subset of the public API, layer ``LAYER``).
- ``runtime.py`` reads and writes TL values; importing this package loads both generated packages so any
  boxed object can be read by its constructor id.
"""

from mtproto.tl import api, mt
from mtproto.tl.layer import LAYER
from mtproto.tl.runtime import (
    RawObject,
    Reader,
    TLDecodeError,
    TLFunction,
    TLObject,
    UnknownConstructorError,
    gzip_pack,
)

__all__ = [
    "LAYER",
    "RawObject",
    "Reader",
    "TLDecodeError",
    "TLFunction",
    "TLObject",
    "UnknownConstructorError",
    "api",
    "gzip_pack",
    "mt",
]
