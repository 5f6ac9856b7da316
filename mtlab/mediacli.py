"""`mtlab media`: the storage engineer's commands on the media service's blob store.

    mtlab media fsck [--dir DIR]     every blob against its hash, every reference against a blob (progress bar)

The main database is found as `mtlab db` finds it (MTLAB_POSTGRES_DSN, else the stack running in --data-dir); the
store is --dir, else MTLAB_MEDIA_DIR, else <data dir>/media. The checks are services/media/fsck.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _bar(done: int, total: int, width: int = 40) -> None:
    filled = width if total == 0 else width * done // total
    end = "\n" if done >= total else ""
    print(f"\r  [{'#' * filled}{'.' * (width - filled)}] {done / 2**20:8.1f} / {total / 2**20:.1f} MiB", end=end,
          file=sys.stderr, flush=True)


def _cmd_fsck(args: argparse.Namespace) -> int:
    from mtlab.dbcli import _Failed, main_dsn
    from services.common import db
    from services.media.blobs import LocalBlobs
    from services.media.fsck import fsck

    root = Path(args.dir or os.environ.get("MTLAB_MEDIA_DIR") or Path(args.data_dir) / "media").absolute()
    if not (root / "blobs").is_dir():
        print(f"mtlab media fsck: no blob store in {root}", file=sys.stderr)
        return 1

    async def work(dsn: str) -> int:
        pool = await db.create_pool(dsn, max_size=1)
        try:
            report = await fsck(pool, LocalBlobs(root), _bar if sys.stderr.isatty() or args.progress else
                                lambda done, total: None)
        finally:
            await pool.close()
        for line in report.problems + report.orphans:
            print(line)
        print(f"{report.blobs} blobs, {report.bytes / 2**20:.1f} MiB checked in {root}: "
              f"{len(report.problems)} problems, {len(report.orphans)} orphans")
        return 1 if report.problems else 0

    try:
        return asyncio.run(work(main_dsn(args)))
    except _Failed as exc:
        print(f"mtlab media fsck: {exc}", file=sys.stderr)
        return 1


def add_media_commands(sub: Any, add_data_dir: Callable[[argparse.ArgumentParser], None]) -> None:
    media = sub.add_parser("media", help="the media service's blob store: fsck",
                           description="Commands on the media service's blob store (services/media).")
    media_sub = media.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND",
                                     help="fsck: check every blob and reference")
    check = media_sub.add_parser("fsck", help="verify every blob against its hash and every reference against a blob",
                                 description="Reads every blob and hashes it, and checks the media tables of the main "
                                 "database against the files. Exits 1 when a problem is found (orphans alone are "
                                 "not one).")
    add_data_dir(check)
    check.add_argument("--dir", default="", help="the blob store (default: MTLAB_MEDIA_DIR, else <data dir>/media)")
    check.add_argument("--progress", action="store_true", help="draw the progress bar even when not on a terminal")
    check.set_defaults(func=_cmd_fsck)
