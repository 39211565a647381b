"""Benchmark: requests/s of the full cached path against the bare floor, over real sockets.

Starts one embedded PostgreSQL + Redis (unless TMWS_DATABASE_URL and TMWS_REDIS_URL are set), one
`tmws serve` in its own process, and a bare WebSocket server in another process that answers each
JSON-RPC request with one Redis GET on the same Redis (`--bare-server`, below). One client process
opens `--connections` WebSocket sessions to each, and for each case sends `--requests` requests per
connection, `--in-flight` at a time. Prints req/s and latency percentiles per case, and the ratio
of the cached path to the bare server measured by the same client in the same run:

    .venv/bin/python scripts/bench_cached_path.py --connections 50 --requests 200 --in-flight 1

`ping` is the transport floor of the TMWS server; `execute_pattern (cached)` is the full path
(fast-mode regex route, strict-mode L1 hit with its Redis generation check, learning record);
`bare ws + redis GET` is what any WebSocket server must at least do for such an answer.

Like for like: both servers compress frames the same way, neither by default (the service's
default, TMWS_WS_COMPRESSION=false), both with permessage-deflate under `--compression`; and both
run on the same event loop, uvloop unless TMWS_UVLOOP=false (the service's default when uvloop
is installed). Runs with and without each show what it is worth to the cached path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.client import WsClient  # noqa: E402
from service.infra.embedded import EmbeddedInfra, free_port  # noqa: E402

CACHED = "execute_pattern (cached)"
BARE = "bare ws + redis GET"
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ping": ("tmws", "ping", {}),
    CACHED: (
        "tmws",
        "execute_pattern",
        {"query": "execute tool test", "execution_mode": "fast", "use_cache": True},
    ),
    BARE: ("bare", "get", {"key": "bench:value"}),
}
#: The plan's acceptance: the cached path reaches at least this share of the bare server.
TARGET_RATIO = 0.5


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


async def wait_listening(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise TimeoutError(f"nothing listening on port {port} within {timeout_s}s")


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


async def main_async(args: argparse.Namespace, urls: dict[str, str]) -> None:
    await wait_healthy(urls["tmws"])
    print(
        f"{args.connections} connections × {args.requests} requests, {args.in_flight} in flight, "
        f"compression {'on' if args.compression else 'off'} on both servers, "
        f"loop {'asyncio' if os.environ.get('TMWS_UVLOOP') == 'false' else 'uvloop'} on both"
    )
    rates: dict[str, float] = {}
    for label, (target, method, params) in CASES.items():
        ws = urls[target].replace("http://", "ws://")
        rps, lat = await run_case(
            ws, method, params, args.connections, args.requests, args.in_flight
        )
        rates[label] = rps
        print(
            f"{label:26s} {rps:8.0f} req/s   p50 {pct(lat, 0.5):6.1f} ms   "
            f"p99 {pct(lat, 0.99):6.1f} ms   n={len(lat)}"
        )
    ratio = rates[CACHED] / rates[BARE]
    verdict = "meets" if ratio >= TARGET_RATIO else "below"
    print(f"cached path / bare ws + redis GET = {ratio:.2f} ({verdict} the {TARGET_RATIO} target)")


# ---------------------------------------------------------------- the bare server


async def bare_server(port: int, redis_url: str, compression: bool) -> None:
    """A WebSocket server doing only what a cached answer needs: parse, one Redis GET, reply."""
    import redis.asyncio as aioredis
    from websockets.asyncio.server import ServerConnection, serve

    client = aioredis.from_url(redis_url)
    await client.set("bench:value", json.dumps({"answer": "cached", "generation": 1}))
    welcome = json.dumps({"jsonrpc": "2.0", "method": "welcome", "params": {"session_id": "bare"}})

    async def handle(ws: ServerConnection) -> None:
        await ws.send(welcome)
        async for raw in ws:
            message = json.loads(raw)
            key = (message.get("params") or {}).get("key", "bench:value")
            value = await client.get(key)
            result = json.loads(value) if value is not None else None
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "result": result}))

    async with serve(handle, "127.0.0.1", port, compression="deflate" if compression else None):
        await asyncio.Future()  # until terminated


@contextlib.contextmanager
def infrastructure(state: Path) -> Iterator[tuple[str, str]]:
    db_url, redis_url = os.environ.get("TMWS_DATABASE_URL"), os.environ.get("TMWS_REDIS_URL")
    if db_url and redis_url:
        yield db_url, redis_url
        return
    infra = EmbeddedInfra.start(state / "infra")
    try:
        yield infra.database_url, infra.redis_url
    finally:
        infra.destroy()


@contextlib.contextmanager
def process(argv: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200, help="per connection and method")
    parser.add_argument("--in-flight", type=int, default=4, help="per connection")
    parser.add_argument(
        "--compression",
        action="store_true",
        help="permessage-deflate on both servers (TMWS_WS_COMPRESSION=true; default: off on both)",
    )
    parser.add_argument(
        "--bare-server", nargs=2, metavar=("PORT", "REDIS_URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.bare_server:
        from service.app import loop_factory
        from service.config import Settings

        with asyncio.Runner(loop_factory=loop_factory(Settings.from_env(os.environ))) as runner:
            runner.run(bare_server(int(args.bare_server[0]), args.bare_server[1], args.compression))
        return 0
    port, bare_port = free_port(), free_port()
    with (
        tempfile.TemporaryDirectory(prefix="tmws-bench-") as state,
        infrastructure(Path(state)) as (db_url, redis_url),
    ):
        env = {
            **os.environ,
            "TMWS_STATE_DIR": state,
            "TMWS_DATABASE_URL": db_url,
            "TMWS_REDIS_URL": redis_url,
            "TMWS_RATE_PER_S": "100000",
            "TMWS_RATE_BURST": "100000",
            "HF_HUB_OFFLINE": "1",
            "TMWS_WS_COMPRESSION": "true" if args.compression else "false",
        }
        tmws = [sys.executable, "-m", "service", "serve", "--port", str(port)]
        bare = [sys.executable, __file__, "--bare-server", str(bare_port), redis_url]
        if args.compression:
            bare.append("--compression")
        with process(tmws, env), process(bare, env):
            asyncio.run(wait_listening(bare_port))
            urls = {"tmws": f"http://127.0.0.1:{port}", "bare": f"http://127.0.0.1:{bare_port}"}
            asyncio.run(main_async(args, urls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
