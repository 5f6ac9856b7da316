"""`mtlab bench media`: a file up and down through the whole stack, next to raw IGE measured in the same run.

A private stack (`mtlab up --detach` in a temporary data directory, on free ports, with its own Postgres and
Redis) is started; one SDK client signs up, uploads a file of random bytes from disk (512 KiB parts, 4 in flight,
saveBigFilePart), stores it with messages.uploadMedia (assembly included), and downloads it back to disk (1 MiB
getFile requests, 4 in flight), checking it is identical. Figures:

- upload and download MB/s, transport encryption included (the client and the gateway both run AES-256-IGE on
  every byte), next to raw cryptg IGE encryption of 512 KiB buffers on this machine: the ratio is the figure;
- peak RSS (``VmHWM``) of the media service and the gateway, read after the transfer, next to the file's size:
  neither may hold a whole file.

Figures are printed, never asserted (shared, noisy machines).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from mtlab.bench import crypto as crypto_bench


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _mtlab(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mtlab", *args, "--data-dir", str(data_dir)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603


async def _transfer(port: int, pem: str, source: Path, target: Path) -> tuple[float, float]:
    from mtlab.client import Client, ClientConfig, account, files
    from mtproto.tl import api
    from services.auth.codes import code_for_test_number

    phone = f"99966{secrets.randbelow(9) + 1}{secrets.randbelow(10**4):04d}"
    async with Client(ClientConfig(server_keys=pem, port=port, ping_interval=None)) as client:
        await account.sign_in_or_up(client.invoke, phone, str(code_for_test_number(phone)), first_name="Bench")
        started = time.perf_counter()
        uploaded = await files.upload(client.invoke, source)
        media = await client.invoke(api.functions.messages.UploadMedia(
            peer=api.types.InputPeerSelf(), media=api.types.InputMediaUploadedDocument(
                file=uploaded, mime_type="application/octet-stream", attributes=[])))
        up = time.perf_counter() - started
        started = time.perf_counter()
        with target.open("wb") as out:
            await files.download(client.invoke, files.location(media), out)
        down = time.perf_counter() - started
    return up, down


def measure(size: int) -> dict[str, Any]:
    from mtproto.crypto import rsa

    ige = next(r for r in crypto_bench.ige_throughput(budget=0.5, sizes=[512 * 1024])
               if r.path == "raw cryptg encrypt")
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
        done = _mtlab(data_dir, env, "up", "--detach", "--gateway-port", str(port), "--gateway-metrics-port",
                      str(_free_port()))
        if done.returncode != 0:
            raise RuntimeError(f"mtlab up failed:\n{done.stdout}{done.stderr}")
        try:
            state = json.loads((data_dir / "supervisor.json").read_text())
            pids = {row["name"]: row["pid"] for row in state["services"]}
            before = {name: _peak_rss(pids[name]) for name in ("media", "gateway")}
            key = rsa.load_private_pem((data_dir / "gateway_rsa.pem").read_bytes())
            pem = rsa.public_pem_pkcs1(key).decode("ascii")
            source, target = Path(tmp) / "source.bin", Path(tmp) / "copy.bin"
            with source.open("wb") as f:
                for _ in range(0, size, 1 << 20):
                    f.write(os.urandom(min(1 << 20, size - f.tell())))
            up, down = anyio.run(_transfer, port, pem, source, target)
            identical = source.read_bytes() == target.read_bytes()
            after = {name: _peak_rss(pids[name]) for name in ("media", "gateway")}
        finally:
            _mtlab(data_dir, env, "down")
    return {"size": size, "ige_mb_s": ige.mb_per_s, "upload_mb_s": size / up / 1e6, "download_mb_s": size / down / 1e6,
            "identical": identical, "peak_rss_before": before, "peak_rss_after": after}


def media_report(*, size: int, as_json: bool = False) -> int:
    try:
        r = measure(size)
    except (RuntimeError, OSError) as exc:
        print(f"mtlab bench media: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(r, indent=2))
        return 0 if r["identical"] else 1
    mib = 2**20
    print(f"mtlab bench media: a {size / mib:.0f} MiB file through the gateway (SDK client, 4 requests in flight)")
    print(f"  raw IGE (cryptg encrypt, 512 KiB buffers): {r['ige_mb_s']:8.1f} MB/s")
    for what in ("upload", "download"):
        rate = r[f"{what}_mb_s"]
        print(f"  {what:<8} {rate:8.1f} MB/s   {rate / r['ige_mb_s']:.2f} of raw IGE (goal: at least 0.3)")
    print(f"  downloaded file identical: {'yes' if r['identical'] else 'NO'}")
    for name in ("media", "gateway"):
        peak, start = r["peak_rss_after"][name] / mib, r["peak_rss_before"][name] / mib
        print(f"  peak RSS of {name:<8} {peak:7.1f} MiB (at start {start:.1f} MiB; the file is {size / mib:.0f} MiB)")
    return 0 if r["identical"] else 1
