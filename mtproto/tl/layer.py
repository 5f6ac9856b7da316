"""The one place that says which API layer mtlab speaks.

LAYER is the layer of Telegram's public API schema that ``schema/api.tl`` is a subset of. It is pinned to the
layer that the current Telethon release on PyPI speaks (Telethon 1.45.0, ``telethon.tl.alltlobjects.LAYER``),
so a stock client library can use every feature the lab implements. ``tests/mtproto/tl/test_schema.py``
checks each constructor id of ``api.tl`` against the installed Telethon of this layer.
"""

from __future__ import annotations

LAYER = 229
