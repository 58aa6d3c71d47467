"""The report in a real headless Chromium, driven over the DevTools protocol (aiohttp websocket, no new deps)."""

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_report import PROMPTS, refined_dataset

from hadron_hf.report import write_report

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--no-default-browser-check", "--window-size=1280,2000",
    "--remote-debugging-port=0", "--remote-allow-origins=*",
]


class Page:
    """One page target: send a command and wait for its answer; events are kept for inspection."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = json.loads((await asyncio.wait_for(self.ws.receive(), 30)).data)
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return msg["result"]  # type: ignore[no-any-return]
            self.events.append(msg)

    async def wait_event(self, method: str) -> dict[str, Any]:
        while True:
            if any(e.get("method") == method for e in self.events):
                return next(e for e in self.events if e.get("method") == method)
            self.events.append(json.loads((await asyncio.wait_for(self.ws.receive(), 30)).data))

    async def eval(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def errors(self) -> list[str]:
        found = [json.dumps(e["params"])[:300] for e in self.events if e.get("method") == "Runtime.exceptionThrown"]
        found += [e["params"]["entry"]["text"] for e in self.events
                  if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
                  and not e["params"]["entry"].get("url", "").endswith("favicon.ico")]
        return found


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    profile = tmp_path / "profile"
    log = (tmp_path / "chromium.log").open("wb")
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield proc, profile
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture
async def page(chromium: tuple[subprocess.Popen[bytes], Path], tmp_path: Path) -> AsyncIterator[Page]:
    proc, profile = chromium
    port_file = profile / "DevToolsActivePort"
    for _ in range(300):
        if (port_file.exists() and port_file.read_text().strip()) or proc.poll() is not None:
            break
        await asyncio.sleep(0.1)
    if not port_file.exists():
        tail = (tmp_path / "chromium.log").read_text(errors="replace")[-500:]
        pytest.skip(f"chromium could not be launched headless (exit {proc.poll()}): {tail}")
    port = int(port_file.read_text().split()[0])
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with session.ws_connect(url, max_msg_size=0) as ws:
            p = Page(ws)
            for domain in ("Page", "Runtime", "Log"):
                await p.send(f"{domain}.enable")
            yield p


async def open_report(page: Page, path: Path, fragment: str = "") -> None:
    page.events.clear()
    await page.send("Page.navigate", url=path.as_uri() + fragment)
    await page.wait_event("Page.loadEventFired")


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(refined_dataset(), tmp_path_factory.mktemp("report") / "report.html", title="Browser test")


async def test_report_renders_in_chromium_without_js_errors(page: Page, report_file: Path,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    await open_report(page, report_file, "#row-0")
    assert await page.eval("document.body.dataset.ready") == "1"
    assert await page.eval("document.body.dataset.jsError || null") is None
    assert page.errors() == []
    assert await page.eval("document.querySelectorAll('details.row').length") == len(PROMPTS)
    assert await page.eval("document.getElementById('row-0').open") is True  # opened from the URL hash
    assert not [e for e in page.events if e.get("method") == "Page.javascriptDialogOpening"]  # no payload ran
    size = (await page.send("Page.getLayoutMetrics"))["cssContentSize"]
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                           clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
    path = tmp_path_factory.getbasetemp() / "report-screenshot.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"report screenshot: {path}")
    assert path.stat().st_size > 10_000


async def test_expanding_searching_and_filtering_rows(page: Page, report_file: Path) -> None:
    await open_report(page, report_file)
    # A payload that ran would have replaced alert; it must never be called.
    await page.eval("window.alert = function(){ document.body.dataset.alerted = '1'; }")
    assert await page.eval("document.getElementById('row-3').open") is False
    await page.eval("document.querySelector('#row-3').scrollIntoView()")
    box = await page.eval("(() => { const r = document.querySelector('#row-3 > summary').getBoundingClientRect();"
                          " return [r.x + 20, r.y + r.height / 2]; })()")
    for kind in ("mousePressed", "mouseReleased"):  # a real click, not a DOM shortcut
        await page.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
    assert await page.eval("document.getElementById('row-3').open") is True
    assert await page.eval("location.hash") == "#row-3"
    assert await page.eval("document.querySelectorAll('#row-3 details.round').length") >= 1
    await page.eval("(() => { const q = document.getElementById('q'); q.value = 'topic 4';"
                    " q.dispatchEvent(new Event('input')); })()")
    visible = await page.eval("[...document.querySelectorAll('details.row')].filter(r => !r.hidden).map(r => r.id)")
    assert visible == ["row-4"]
    await page.eval("(() => { const q = document.getElementById('q'); q.value = '';"
                    " q.dispatchEvent(new Event('input')); const f = document.getElementById('f');"
                    " f.value = 'error'; f.dispatchEvent(new Event('change')); })()")
    visible = await page.eval("[...document.querySelectorAll('details.row')].filter(r => !r.hidden).map(r => r.id)")
    assert visible == [f"row-{len(PROMPTS) - 1}"]
    assert await page.eval("document.getElementById('shown').textContent") == f"1 of {len(PROMPTS)} rows"
    assert await page.eval("document.body.dataset.alerted || null") is None
    assert page.errors() == []
