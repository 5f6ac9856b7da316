"""TL, the Type Language of MTProto (core.telegram.org/mtproto/TL): schemas, generator, runtime.

- ``schema/*.tl`` are the source of truth; ``generator.py`` turns them into the committed packages
  ``mt`` (the MTProto service schema), ``api`` (the pinned subset of the public API, layer ``LAYER``) and
  ``internal`` (mtlab's own frames between the gateway and the services, never sent to clients) and ``secret``
  (the end-to-end layer of secret chats, which only clients read: core.telegram.org/api/end-to-end).
- ``runtime.py`` reads and writes TL values; importing this package loads both generated packages so any
  boxed object can be read by its constructor id.
"""

from mtproto.tl import api, internal, mt, secret
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
    "internal",
    "mt",
    "secret",
]
