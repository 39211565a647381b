"""Benchmark: requests/s of the full cached path against the bare floor, over real sockets.

Starts one `tmws serve` in its own process (embedded PostgreSQL + Redis unless TMWS_* URLs are
set), opens `--connections` WebSocket sessions, and for each method sends `--requests` requests
per connection, `--in-flight` at a time. Prints req/s and latency percentiles per method:

    .venv/bin/python scripts/bench_cached_path.py --connections 50 --requests 200

`ping` is the transport floor; `execute_pattern` with a cached infrastructure query is the full
path (router regex, strict-mode L1 hit with its Redis generation check, learning-record insert).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.client import WsClient  # noqa: E402
from service.infra.embedded import free_port  # noqa: E402

CASES = {
    "ping": ("ping", {}),
    "execute_pattern (cached)": (
        "execute_pattern",
        {"query": "execute tool test", "execution_mode": "fast", "use_cache": True},
    ),
}


async def wait_healthy(url: str, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{url}/health", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"server at {url} not healthy within {timeout_s}s")


async def run_case(
    url: str, method: str, params: dict, connections: int, requests: int, in_flight: int
) -> tuple[float, list[float]]:
    clients = [await WsClient.connect(url, f"bench-{i}") for i in range(connections)]
    latencies: list[float] = []
    try:
        await clients[0].call(method, params)  # warm: the first execute fills the cache

        async def one_client(client: WsClient) -> None:
            semaphore = asyncio.Semaphore(in_flight)

            async def one() -> None:
                async with semaphore:
                    started = time.perf_counter()
                    await client.call(method, params, timeout=30)
                    latencies.append((time.perf_counter() - started) * 1000.0)

            await asyncio.gather(*(one() for _ in range(requests)))

        started = time.perf_counter()
        await asyncio.gather(*(one_client(c) for c in clients))
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return len(latencies) / elapsed, sorted(latencies)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def main_async(args: argparse.Namespace, url: str) -> None:
    await wait_healthy(url)
    ws = url.replace("http://", "ws://")
    print(f"{args.connections} connections × {args.requests} requests, {args.in_flight} in flight")
    for label, (method, params) in CASES.items():
        rps, lat = await run_case(
            ws, method, params, args.connections, args.requests, args.in_flight
        )
        print(
            f"{label:26s} {rps:8.0f} req/s   p50 {pct(lat, 0.5):6.1f} ms   "
            f"p99 {pct(lat, 0.99):6.1f} ms   n={len(lat)}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200, help="per connection and method")
    parser.add_argument("--in-flight", type=int, default=4, help="per connection")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tmws-bench-") as state:
        env = {
            **os.environ,
            "TMWS_STATE_DIR": state,
            "TMWS_RATE_PER_S": "100000",
            "TMWS_RATE_BURST": "100000",
            "HF_HUB_OFFLINE": "1",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            asyncio.run(main_async(args, f"http://127.0.0.1:{port}"))
        finally:
            server.terminate()
            server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
