"""Open a local HTML file in headless Chromium over the DevTools protocol: collect console errors
and uncaught exceptions, and take a screenshot (the screenshot tests of the reports)."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    rendered: dict[str, Any] = field(default_factory=dict)


async def _session(ws_url: str, page_url: str, probe: str, settle_s: float) -> PageLoad:
    out = PageLoad()
    ids = iter(range(1, 10_000))
    async with websockets.connect(ws_url, max_size=64 << 20) as ws:
        pending: dict[int, asyncio.Future[Any]] = {}

        async def send(method: str, params: dict[str, Any] | None = None) -> Any:
            mid = next(ids)
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pending[mid] = fut
            await ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
            return await asyncio.wait_for(fut, 60)

        loaded = asyncio.Event()

        async def reader() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if "id" in msg and msg["id"] in pending:
                    pending.pop(msg["id"]).set_result(msg.get("result", msg.get("error")))
                    continue
                method, params = msg.get("method"), msg.get("params", {})
                if method == "Runtime.exceptionThrown":
                    details = params.get("exceptionDetails", {})
                    text = details.get("exception", {}).get("description") or details.get("text")
                    out.errors.append(f"exception: {text}")
                elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                    args = [str(a.get("value", a.get("description"))) for a in params["args"]]
                    out.errors.append("console.error: " + " ".join(args))
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    out.errors.append(f"log: {params['entry'].get('text')}")
                elif method == "Page.loadEventFired":
                    loaded.set()

        task = asyncio.create_task(reader())
        try:
            for domain in ("Runtime", "Log", "Page"):
                await send(f"{domain}.enable")
            await send("Page.navigate", {"url": page_url})
            await asyncio.wait_for(loaded.wait(), 60)
            # Let plotly draw (it renders synchronously on load; a short bound for late errors).
            deadline = time.monotonic() + settle_s
            while time.monotonic() < deadline:
                result = await send(
                    "Runtime.evaluate", {"expression": probe, "returnByValue": True}
                )
                out.rendered = result.get("result", {}).get("value") or {}
                if out.rendered.get("done"):
                    break
                await asyncio.sleep(0.2)  # polling the page's own state, bounded by the deadline
            shot = await send("Page.captureScreenshot", {"format": "png"})
            out.screenshot = base64.b64decode(shot["data"])
        finally:
            task.cancel()
    return out


#: JS: how many plotly graphs exist and how many have drawn their SVG.
PLOTLY_PROBE = (
    "(() => { const g = document.querySelectorAll('.js-plotly-plot');"
    " const drawn = [...g].filter(e => e.querySelector('.main-svg')).length;"
    " return {graphs: g.length, drawn: drawn, done: g.length > 0 && drawn === g.length}; })()"
)


def load_page(page: Path, *, settle_s: float = 20.0) -> PageLoad:
    """Open `page` in a fresh headless Chromium (its own profile), stopped afterwards."""
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("no Chromium found (Debian: apt-get install chromium)")
    profile = Path(tempfile.mkdtemp(prefix="tmws-chromium-"))
    proc = subprocess.Popen(
        [
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"Chromium did not open its DevTools port (exit {proc.poll()})")
            time.sleep(0.1)  # waiting for the browser's own file, bounded
        port = port_file.read_text().splitlines()[0]
        # The browser endpoint; open one page target and talk to it.
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            pages = [t for t in json.load(resp) if t.get("type") == "page"]
        return asyncio.run(
            _session(
                pages[0]["webSocketDebuggerUrl"], page.resolve().as_uri(), PLOTLY_PROBE, settle_s
            )
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        shutil.rmtree(profile, ignore_errors=True)
