"""`mtlab bench media`: a file up and down through the whole stack, next to raw IGE measured in the same run.

A private stack (`mtlab up --detach` in a temporary data directory, on free ports) is started; one SDK client
signs up and, ``runs`` times over, uploads a new file of random bytes from disk (512 KiB parts, 8 in flight,
saveBigFilePart above 10 MB), has it stored with messages.uploadMedia (the assembly: the parts hashed and linked
into the blob store) and downloads it back to disk (1 MiB getFile requests, 4 in flight), checking it is
identical. Figures, each the best run's with the median beside it:

- upload (the parts), upload and store (the parts, then uploadMedia), and download, in MB/s, transport encryption
  included (the client and the gateway each run AES-256-IGE and SHA-256 over every byte), next to raw cryptg IGE
  encryption of 512 KiB buffers in this process, measured before and after the transfers (the better of the
  two): the ratio is the figure;
- the CPU seconds the client, the gateway and the media service spent on each phase: where the time goes (on a
  machine with two cores, three processes share them);
- peak RSS (``VmHWM``) of the media service and the gateway after the transfers, next to the file's size: neither
  may hold a whole file.

Figures are printed, never asserted (shared, noisy machines).
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from mtlab.bench import crypto as crypto_bench
from mtlab.bench.messages import Meters, _free_port, process_cpu

PHASES = ("upload", "store", "download")
PROCESSES = ("client", "gateway", "media")


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _mtlab(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mtlab", *args, "--data-dir", str(data_dir)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603


@dataclass
class Run:
    """One round trip of the file: seconds and CPU seconds per phase (``cpu[phase][process]``)."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    identical: bool = False


class _Clock:
    """Wall time and the CPU of the three processes that handle the bytes (this one is the client), read between
    phases."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.meters: Meters = {"client": time.process_time} | {name: partial(process_cpu, pid)
                                                                 for name, pid in pids.items()}
        self.last = self._read()

    def _read(self) -> tuple[float, dict[str, float]]:
        return time.perf_counter(), {name: meter() or 0.0 for name, meter in self.meters.items()}

    def lap(self, run: Run, phase: str) -> None:
        now = self._read()
        run.seconds[phase] = now[0] - self.last[0]
        run.cpu[phase] = {name: round(now[1][name] - self.last[1][name], 3) for name in PROCESSES}
        self.last = now


async def _transfers(port: int, pem: str, source: Path, target: Path, size: int, pids: dict[str, int],
                     runs: int) -> list[Run]:
    from mtlab.client import Client, ClientConfig, account, files
    from mtproto.tl import api
    from services.auth.codes import code_for_test_number

    phone = f"99966{secrets.randbelow(9) + 1}{secrets.randbelow(10**4):04d}"
    done: list[Run] = []
    async with Client(ClientConfig(server_keys=pem, port=port, ping_interval=None)) as client:
        await account.sign_in_or_up(client.invoke, phone, str(code_for_test_number(phone)), first_name="Bench")
        for _ in range(runs):
            _random_file(source, size)  # new content each time: a repeat would be deduplicated, not stored
            run = Run()
            clock = _Clock(pids)
            uploaded = await files.upload(client.invoke, source)
            clock.lap(run, "upload")
            media = await client.invoke(api.functions.messages.UploadMedia(
                peer=api.types.InputPeerSelf(), media=api.types.InputMediaUploadedDocument(
                    file=uploaded, mime_type="application/octet-stream", attributes=[])))
            clock.lap(run, "store")
            with target.open("wb") as out:
                await files.download(client.invoke, files.location(media), out)
            clock.lap(run, "download")
            run.identical = _same(source, target)
            target.unlink()
            done.append(run)
    return done


def _random_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        for _ in range(0, size, 1 << 20):
            f.write(os.urandom(min(1 << 20, size - f.tell())))


def _same(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _raw_ige() -> float:
    return next(r for r in crypto_bench.ige_throughput(budget=0.5, sizes=[512 * 1024])
                if r.path == "raw cryptg encrypt").mb_per_s


def measure(size: int, runs: int = 3) -> dict[str, Any]:
    from mtproto.crypto import rsa

    ige_before = _raw_ige()
    with tempfile.TemporaryDirectory(prefix="mtlab-bench-media-") as tmp:
        data_dir = Path(tmp) / "stack"
        data_dir.mkdir()
        data_dir.chmod(0o755)
        Path(tmp).chmod(0o755)  # Postgres runs as another account under root and must enter it
        env = {k: v for k, v in os.environ.items() if not k.startswith("MTLAB_")} | {
            "MTLAB_DATA_DIR": str(data_dir), "MTLAB_SHARD_LOGICAL": "8", "MTLAB_SHARD_PHYSICAL": "2",
            **{f"MTLAB_{s}_{p}": "0" for s in ("AUTH", "MESSAGES", "UPDATES", "MEDIA")
               for p in ("RPC_PORT", "METRICS_PORT")}, "MTLAB_GATEWAY_WS_PORT": "0"}
        port = _free_port()
        started = _mtlab(data_dir, env, "up", "--detach", "--gateway-port", str(port), "--gateway-metrics-port",
                         str(_free_port()))
        if started.returncode != 0:
            raise RuntimeError(f"mtlab up failed:\n{started.stdout}{started.stderr}")
        try:
            state = json.loads((data_dir / "supervisor.json").read_text())
            pids = {row["name"]: row["pid"] for row in state["services"] if row["name"] in ("media", "gateway")}
            before = {name: _peak_rss(pid) for name, pid in pids.items()}
            key = rsa.load_private_pem((data_dir / "gateway_rsa.pem").read_bytes())
            pem = rsa.public_pem_pkcs1(key).decode("ascii")
            source, target = Path(tmp) / "source.bin", Path(tmp) / "copy.bin"
            done = anyio.run(_transfers, port, pem, source, target, size, pids, runs)
            after = {name: _peak_rss(pid) for name, pid in pids.items()}
        finally:
            _mtlab(data_dir, env, "down")
    ige = max(ige_before, _raw_ige())

    def rates(seconds: list[float]) -> dict[str, float]:
        mb_s = [size / s / 1e6 for s in seconds]
        return {"best_mb_s": max(mb_s), "median_mb_s": statistics.median(mb_s), "best_ratio": max(mb_s) / ige,
                "median_ratio": statistics.median(mb_s) / ige}

    return {
        "size": size, "runs": [asdict(r) for r in done], "ige_mb_s": ige,
        "upload": rates([r.seconds["upload"] for r in done]),
        "upload_and_store": rates([r.seconds["upload"] + r.seconds["store"] for r in done]),
        "download": rates([r.seconds["download"] for r in done]),
        "store_ms": statistics.median(r.seconds["store"] * 1000 for r in done),
        "identical": all(r.identical for r in done), "peak_rss_before": before, "peak_rss_after": after,
    }


def media_report(*, size: int, runs: int = 3, as_json: bool = False) -> int:
    try:
        r = measure(size, runs)
    except (RuntimeError, OSError) as exc:
        print(f"mtlab bench media: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(r, indent=2))
        return 0 if r["identical"] else 1
    mib = 2**20
    print(f"mtlab bench media: a {size / mib:.0f} MiB file through the gateway and back, {runs} times (SDK client; "
          "8 parts, or 4 chunks, in flight)")
    print(f"  raw IGE (cryptg encrypt, 512 KiB buffers): {r['ige_mb_s']:8.1f} MB/s")
    print("                       best run               median run")
    for key, label in (("upload", "upload (the parts)"), ("upload_and_store", "upload and store"),
                       ("download", "download")):
        x = r[key]
        print(f"  {label:<19} {x['best_mb_s']:7.1f} MB/s = {x['best_ratio']:.2f}   {x['median_mb_s']:7.1f} MB/s = "
              f"{x['median_ratio']:.2f} of raw IGE (goal: at least 0.3)")
    print(f"  store (uploadMedia: the assembly), median: {r['store_ms']:.0f} ms")
    print("  CPU seconds per phase, median run (client / gateway / media):")
    for phase in PHASES:
        cpu = {p: statistics.median(run["cpu"][phase][p] for run in r["runs"]) for p in PROCESSES}
        print(f"    {phase:<9} " + " / ".join(f"{cpu[p]:.2f}" for p in PROCESSES))
    print(f"  downloaded file identical: {'yes' if r['identical'] else 'NO'}")
    for name in ("media", "gateway"):
        peak, start = r["peak_rss_after"][name] / mib, r["peak_rss_before"][name] / mib
        print(f"  peak RSS of {name:<8} {peak:7.1f} MiB (at start {start:.1f} MiB; the file is {size / mib:.0f} MiB)")
    return 0 if r["identical"] else 1
