"""Photos: what an uploaded image becomes (core.telegram.org/api/files, "photo" objects with sizes).

Pillow (the maintained fork of PIL) decodes the upload. When it can, the photo keeps the original bytes as its
largest size, labelled with Telegram's size letter for its longest side, and gets smaller JPEG thumbnails for the
letters below (``s`` 100 px, ``m`` 320 px) when they are smaller in bytes too. Unlike Telegram, the original is
not re-encoded: a download gives back the bytes that were sent. When Pillow cannot decode it (not an image, a
format Pillow lacks, a decompression bomb, a file larger than ``photo_max_size``), the upload is stored as a
document instead: the sender's file is never refused for not being a picture.

Decoding is CPU work on untrusted input: it runs in a worker thread, and Pillow's own pixel limit
(``Image.MAX_IMAGE_PIXELS``, about 89 megapixels, an error at twice that) turns a bomb into an error we catch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

#: Telegram's photo size letters and the box each fits in (core.telegram.org/api/files#image-thumbnail-types).
BOXES = (("s", 100), ("m", 320), ("x", 800), ("y", 1280), ("w", 2560))
THUMBS = ("s", "m")
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp"}


@dataclass(frozen=True)
class Decoded:
    width: int
    height: int
    mime_type: str
    letter: str  # the original's size letter
    thumbs: list[tuple[str, int, int, bytes]]  # (letter, w, h, JPEG bytes), smallest first


def letter_for(longest: int) -> str:
    for letter, box in BOXES:
        if longest <= box:
            return letter
    return BOXES[-1][0]


def decode(path: Path, size: int) -> Decoded | None:
    """The photo ``path`` holds and its thumbnails, or None when it is not an image Pillow can decode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as probe:
                probe.verify()  # structure check without decoding the pixels
            with Image.open(path) as img:
                fmt = img.format or ""
                width, height = img.size
                img.load()
                rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
    if fmt not in MIME or width <= 0 or height <= 0:
        return None
    longest = max(width, height)
    thumbs = []
    for letter, box in BOXES:
        if letter not in THUMBS or box >= longest:
            continue
        small = rgb.copy()
        small.thumbnail((box, box))
        out = io.BytesIO()
        small.save(out, "JPEG", quality=80)
        # A thumbnail no smaller than the original (a tiny PNG of one colour) is useless, and clients pick the
        # largest size by bytes (Telethon does): it would be downloaded instead of the photo.
        if len(out.getvalue()) < size:
            thumbs.append((letter, small.width, small.height, out.getvalue()))
    return Decoded(width, height, MIME[fmt], letter_for(longest), thumbs)
