"""Where file bytes live: content-addressed blobs, and the parts of uploads in progress (staging).

``BlobStore`` is the small interface the service needs of any backend (a local directory here; an S3-compatible
store would implement the same six calls, its ``adopt`` uploading the finished file where a local store links it).
A blob is named by the SHA-256 of its content, so identical content is one blob however many files point at it
(the database counts the references: ``media_blobs.refs``).

``LocalBlobs`` lays a directory out as::

    <root>/blobs/ab/cd/abcd...   one file per blob, named by its SHA-256 in hex, never modified once there
    <root>/tmp/                  names being moved into place; emptied at start-up (what a crash left is garbage)
    <root>/staging/<owner>/<file_id>/slot            the upload's parts, each at its place in the file
    <root>/staging/<owner>/<file_id>/<part>.<token>  a part whose place was not known yet when it came

Staging writes each part where it belongs in the finished file: part n at n * part_size of the upload's ``slot``
file. Assembly then has nothing to copy: it hashes the slot file, fsyncs it and hard-links it into ``blobs/``
(copying 30 MiB into a new file cost four times as much as hashing it: the copy needs as many fresh pages of page
cache again). A part's place is unknown only while the upload's part size is: part 0 is always at 0, but a later
part that comes first may be the last one, smaller than the others. Such a part waits in a side file (its row's
``token`` names it) until assembly copies it in; with parts sent roughly in order that is rare and small.

A blob appears under ``blobs/`` only whole: it is fsynced before it is linked there, and the directory is fsynced
so the link survives a power cut. A crash before the link leaves nothing under ``blobs/``; after it, a complete
blob that no row points at yet (an orphan the sweeper removes once it is older than ``orphan_grace``, in case an
assembly is about to commit it). Such an orphan shares its bytes with the upload's slot file until that is
deleted, so a part sent again afterwards could change it: ``adopt`` therefore verifies an existing blob's hash
before it trusts it, and replaces one that does not match.

Every call does blocking file I/O and is meant to run in a worker thread (``anyio.to_thread.run_sync``); nothing
here holds more than one read buffer or one part in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024  # read buffer of hashing


class Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


class Readable(Protocol):
    def readinto(self, buffer: bytearray, /) -> int | None: ...


class BlobStore(Protocol):
    """What the media service needs of a blob backend."""

    def new_temp(self) -> Path: ...
    def adopt(self, sha256: bytes, source: Path) -> bool: ...
    def put(self, sha256: bytes, temp: Path) -> bool:
        """Move the fsynced ``temp`` into place as blob ``sha256`` (``adopt``, then the temp name goes); False when
        the content was already stored."""
        try:
            return self.adopt(sha256, temp)
        finally:
            temp.unlink(missing_ok=True)

    def read(self, sha256: bytes, offset: int, limit: int) -> bytes: ...
    def delete(self, sha256: bytes) -> None: ...
    def exists(self, sha256: bytes) -> bool: ...


def hash_file(f: Readable, *hashes: Hash, progress: Callable[[int], None] = lambda done: None) -> int:
    """Feed the file's bytes from its current position to the end to each of ``hashes``; how many there were.
    One buffer, reused (a fresh buffer per read costs fresh pages of memory per read)."""
    buffer = bytearray(CHUNK)
    done = 0
    with memoryview(buffer) as view:
        while n := f.readinto(buffer):
            for h in hashes:
                h.update(view[:n])
            done += n
            progress(done)
    return done


def _sha256_of(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        hash_file(f, digest)
    return digest.digest()


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

    def adopt(self, sha256: bytes, source: Path) -> bool:
        """Make ``source`` (whole, fsynced, and not written again) blob ``sha256``, by a hard link; False when the
        content was already stored (verified: see the module docstring)."""
        final = self.path(sha256)
        if final.exists() and _sha256_of(final) == sha256:
            # Fresh again: the sweeper deletes unreferenced blobs only once they are older than its grace, and
            # this one is about to be referenced.
            os.utime(final)
            return False
        # Not there, or an orphan whose bytes changed after its link (its upload's slot file was written again).
        final.parent.mkdir(parents=True, exist_ok=True)
        link = self.new_temp()
        os.link(source, link)
        # Atomic, and over a bad orphan too (os.link alone would refuse an existing name); two assemblies of the
        # same content may both get here, and whichever lands last changes nothing.
        os.replace(link, final)
        os.utime(final)  # the sweeper's grace counts from now, not from the slot's last write
        _fsync_dir(final.parent)
        return True

    def put(self, sha256: bytes, temp: Path) -> bool:
        """Move the fsynced ``temp`` into place as blob ``sha256``; False (``temp`` deleted) when the content is
        already stored (verified, as in ``adopt``)."""
        final = self.path(sha256)
        if final.exists() and _sha256_of(final) == sha256:
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

    def slot_path(self, owner: int, file_id: int) -> Path:
        return self.upload_dir(owner, file_id) / "slot"

    def part_path(self, owner: int, file_id: int, part: int, token: int) -> Path:
        """A side file: a part whose place in the slot file was not known when it came (``token`` is not 0)."""
        return self.upload_dir(owner, file_id) / f"{part}.{token:x}"

    def write_part(self, owner: int, file_id: int, part: int, token: int, offset: int, data: bytes) -> None:
        """Stage one part: at ``offset`` of the slot file when ``token`` is 0, else in its own side file. Not
        fsynced (assembly fsyncs the whole file once): a power cut may lose it, and its row with it."""
        if token:
            path = self.part_path(owner, file_id, part, token)
            flags, offset = os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0
        else:
            path, flags = self.slot_path(owner, file_id), os.O_WRONLY | os.O_CREAT
        try:
            fd = os.open(path, flags, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o644)
        try:
            with memoryview(data) as view:
                done = 0
                while done < len(view):
                    done += os.pwrite(fd, view[done:], offset + done)
        finally:
            os.close(fd)

    def drop_part(self, owner: int, file_id: int, part: int, token: int) -> None:
        if token:
            self.part_path(owner, file_id, part, token).unlink(missing_ok=True)

    def drop_upload(self, owner: int, file_id: int) -> None:
        shutil.rmtree(self.upload_dir(owner, file_id), ignore_errors=True)

    def staged_uploads(self) -> Iterator[tuple[int, int, Path]]:
        """(owner, file_id as unsigned, directory) of every staging directory."""
        for owner_dir in self.staging.iterdir():
            for upload in owner_dir.iterdir():
                with contextlib.suppress(ValueError):
                    yield int(owner_dir.name), int(upload.name), upload
