"""`mtlab media fsck` on a real store and database: clean after uploads; a flipped byte, a deleted blob and a blob
nobody names are each reported (the CLI exits 1 for the first two)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.media import KIB, MediaLab

REPO = Path(__file__).resolve().parents[3]


def fsck(database: str, root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MTLAB_POSTGRES_DSN": database}
    return subprocess.run([sys.executable, "-m", "mtlab", "media", "fsck", "--dir", str(root), "--progress"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_fsck_finds_corrupt_missing_and_orphaned_blobs(database: str, tmp_path: Path) -> None:
    async def fill() -> list[Path]:
        async with MediaLab(database, tmp_path) as lab:
            for size in (10, 300 * KIB, 2 * 1024 * KIB):
                await lab.upload(1, os.urandom(size))
            return lab.blob_files()

    blobs = asyncio.run(fill())
    clean = fsck(database, tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "3 blobs" in clean.stdout and "0 problems" in clean.stdout
    assert "MiB" in clean.stderr  # the progress bar

    data = bytearray(blobs[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    blobs[0].write_bytes(bytes(data))
    blobs[1].unlink()
    name = hashlib.sha256(b"nobody names me").hexdigest()
    orphan = tmp_path / "blobs" / name[:2] / name[2:4] / name
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"nobody names me")  # whole and hashing to its name, but no row: an orphan, not a problem
    found = fsck(database, tmp_path)
    assert found.returncode == 1
    lines = found.stdout.splitlines()
    assert any(line.startswith("corrupt:") and blobs[0].name in line for line in lines)
    assert any(line.startswith("missing:") and blobs[1].name in line for line in lines)
    assert any(line.startswith("orphan:") and orphan.name in line for line in lines)
    assert "2 problems, 1 orphans" in found.stdout, found.stdout
