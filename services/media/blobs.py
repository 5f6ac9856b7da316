"""Where file bytes live: content-addressed blobs, and the parts of uploads in progress (staging).

``BlobStore`` is the small interface the service needs of any backend (a local directory here; an S3-compatible
store would implement the same five calls). A blob is named by the SHA-256 of its content, so identical content
is one blob however many files point at it (the database counts the references: ``media_blobs.refs``).

``LocalBlobs`` lays a directory out as::

    <root>/blobs/ab/cd/abcd...   one file per blob, named by its SHA-256 in hex, never modified once there
    <root>/tmp/                  blobs being written; emptied at start-up (what a crash left is garbage)
    <root>/staging/<owner>/<file_id>/<part>.<token>   the parts of uploads in progress

A blob appears under ``blobs/`` only whole: it is written to ``tmp/``, fsynced, then renamed into place (rename
is atomic on POSIX), and the directory is fsynced so the rename survives a power cut. A crash before the rename
leaves only a temp file; after it, a complete blob that no row points at yet (an orphan the sweeper removes once
it is older than the upload expiry, in case an assembly is about to commit it).

Every call does blocking file I/O and is meant to run in a worker thread (``anyio.to_thread.run_sync``); nothing
here holds more than one read buffer or one part in memory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

CHUNK = 256 * 1024  # read/write buffer of streaming copies and hashing


class BlobStore(Protocol):
    """What the media service needs of a blob backend."""

    def new_temp(self) -> Path: ...
    def put(self, sha256: bytes, temp: Path) -> bool: ...
    def read(self, sha256: bytes, offset: int, limit: int) -> bytes: ...
    def delete(self, sha256: bytes) -> None: ...
    def exists(self, sha256: bytes) -> bool: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobs:
    """Blobs and staged parts in one local directory (on one file system, so a rename is atomic)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.staging = root / "staging"

    def open(self) -> int:
        """Create the layout; delete what a crash left in ``tmp/``. Returns how many temp files were removed."""
        for d in (self.blobs, self.tmp, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        removed = 0
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    # -- blobs ----------------------------------------------------------------------------------------------

    def path(self, sha256: bytes) -> Path:
        name = sha256.hex()
        return self.blobs / name[:2] / name[2:4] / name

    def new_temp(self) -> Path:
        return self.tmp / f"{secrets.token_hex(12)}.part"

    def put(self, sha256: bytes, temp: Path) -> bool:
        """Move the fsynced ``temp`` into place as blob ``sha256``; False (``temp`` deleted) when the content is
        already stored."""
        final = self.path(sha256)
        if final.exists():
            temp.unlink(missing_ok=True)
            # Fresh again: the sweeper deletes unreferenced blobs only once they are older than its grace, and
            # this one is about to be referenced.
            os.utime(final)
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        # Two assemblies of the same content may both get here: each rename is atomic and both files are
        # identical, so whichever lands last changes nothing.
        os.replace(temp, final)
        _fsync_dir(final.parent)
        return True

    def read(self, sha256: bytes, offset: int, limit: int) -> bytes:
        with self.path(sha256).open("rb") as f:
            f.seek(offset)
            return f.read(limit)

    def delete(self, sha256: bytes) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def exists(self, sha256: bytes) -> bool:
        return self.path(sha256).exists()

    def size(self, sha256: bytes) -> int:
        return self.path(sha256).stat().st_size

    def all(self) -> Iterator[tuple[bytes, Path]]:
        """Every blob file: (the SHA-256 its name claims, its path); names that are not a hash are skipped."""
        for path in sorted(self.blobs.glob("*/*/*")):
            with contextlib.suppress(ValueError):
                if len(path.name) == 64:
                    yield bytes.fromhex(path.name), path

    def older_than(self, path: Path, seconds: float, now: float) -> bool:
        try:
            return now - path.stat().st_mtime > seconds
        except FileNotFoundError:
            return False

    # -- staging --------------------------------------------------------------------------------------------

    def upload_dir(self, owner: int, file_id: int) -> Path:
        return self.staging / str(owner) / str(file_id & 0xFFFFFFFFFFFFFFFF)

    def part_path(self, owner: int, file_id: int, part: int, token: int) -> Path:
        return self.upload_dir(owner, file_id) / f"{part}.{token:x}"

    def write_part(self, owner: int, file_id: int, part: int, token: int, data: bytes) -> None:
        """Stage one part. Not fsynced: a staged part that a crash lost or cut short is found at assembly (its
        size differs from the recorded one) and reported as missing, so the client sends it again."""
        path = self.part_path(owner, file_id, part, token)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.write(data)

    def drop_part(self, owner: int, file_id: int, part: int, token: int) -> None:
        self.part_path(owner, file_id, part, token).unlink(missing_ok=True)

    def drop_upload(self, owner: int, file_id: int) -> None:
        shutil.rmtree(self.upload_dir(owner, file_id), ignore_errors=True)

    def staged_uploads(self) -> Iterator[tuple[int, int, Path]]:
        """(owner, file_id as unsigned, directory) of every staging directory."""
        for owner_dir in self.staging.iterdir():
            for upload in owner_dir.iterdir():
                with contextlib.suppress(ValueError):
                    yield int(owner_dir.name), int(upload.name), upload
