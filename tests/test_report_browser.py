"""The report in a real headless Chromium, driven over the DevTools protocol (aiohttp websocket, no new deps).

Screenshots land in pytest's tmp folder (their paths are printed); set ``HADRON_REPORT_SHOTS`` to a folder to
get copies there too.
"""

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from datasets import Dataset
from report_fixtures import demo_like, forty_rows, refine, synthetic_rows

from hadron_hf.report import write_report

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--no-default-browser-check", "--window-size=1280,1000",
    "--remote-debugging-port=0", "--remote-allow-origins=*", "--hide-scrollbars",
]
PAYLOAD = "<img src=x onerror=alert(1)><script>alert(2)</script>"
VISIBLE_IDS = "[...document.querySelectorAll('#rows details.row')].map(r => +r.id.slice(4))"


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
            msg = json.loads((await asyncio.wait_for(self.ws.receive(), 60)).data)
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return msg["result"]  # type: ignore[no-any-return]
            self.events.append(msg)

    async def wait_event(self, method: str) -> dict[str, Any]:
        while True:
            if any(e.get("method") == method for e in self.events):
                return next(e for e in self.events if e.get("method") == method)
            self.events.append(json.loads((await asyncio.wait_for(self.ws.receive(), 60)).data))

    async def eval(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def until(self, expression: str, tries: int = 200) -> Any:
        """Poll ``expression`` until it is truthy (the page's search waits 120 ms before filtering)."""
        for _ in range(tries):
            if value := await self.eval(expression):
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"never true: {expression}")

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (scrolled into view first), not a DOM shortcut."""
        box = await self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                              " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                              " return [r.x + Math.min(20, r.width / 2), r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    async def choose(self, selector: str, value: str) -> None:
        await self.eval(f"(() => {{ const s = document.querySelector({json.dumps(selector)}); s.value = "
                        f"{json.dumps(value)}; s.dispatchEvent(new Event('change')); }})()")

    async def type_search(self, text: str) -> None:
        """Type into the search box as a user would; an empty text clears it."""
        await self.eval("(() => { const q = document.getElementById('q'); q.focus(); q.value = '';"
                        " q.dispatchEvent(new Event('input')); })()")
        if text:
            await self.send("Input.insertText", text=text)

    async def screenshot(self, path: Path, selector: str | None = None) -> Path:
        """Save a PNG of the whole page, or of one element, and print where it went."""
        if selector:
            rect = await self.eval(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                                   ".getBoundingClientRect(); return [r.x + scrollX, r.y + scrollY, r.width,"
                                   " r.height]; })()")
        else:
            size = (await self.send("Page.getLayoutMetrics"))["cssContentSize"]
            rect = [0, 0, size["width"], size["height"]]
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                               clip={"x": rect[0], "y": rect[1], "width": rect[2], "height": min(rect[3], 12000),
                                     "scale": 1})
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"report screenshot: {path}")
        if folder := os.environ.get("HADRON_REPORT_SHOTS"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(folder) / path.name)
        return path

    def errors(self) -> list[str]:
        found = [json.dumps(e["params"])[:300] for e in self.events if e.get("method") == "Runtime.exceptionThrown"]
        found += [e["params"]["entry"]["text"] for e in self.events
                  if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
                  and not e["params"]["entry"].get("url", "").endswith("favicon.ico")]
        found += [e["params"]["message"]["text"] for e in self.events if e.get("method") == "Console.messageAdded"
                  and e["params"]["message"]["level"] == "error"]
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
            for domain in ("Page", "Runtime", "Log", "Console"):
                await p.send(f"{domain}.enable")
            yield p


async def open_report(page: Page, path: Path, fragment: str = "") -> None:
    page.events.clear()
    await page.send("Page.navigate", url=path.as_uri() + fragment)
    await page.wait_event("Page.loadEventFired")
    assert await page.until("document.body.dataset.ready") == "1"
    assert await page.eval("document.body.dataset.jsError || null") is None


@pytest.fixture(scope="module")
def forty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset]:
    ds, run = forty_rows()
    return write_report(ds, tmp_path_factory.mktemp("forty") / "report-40.html", run=run), ds


async def test_forty_row_report_shows_winner_paths_diffs_and_origins(page: Page, forty: tuple[Path, Dataset],
                                                                     tmp_path: Path) -> None:
    path, ds = forty
    await open_report(page, path)
    assert await page.eval(VISIBLE_IDS) == list(range(40))
    first_line = await page.eval("document.querySelector('#row-0 > summary').innerText")
    winners = [r["winner"] for r in ds[0]["autoreason_trace"]["rounds"]]
    assert " → ".join(winners) in first_line
    error_line = await page.eval("document.querySelector('#row-39 > summary').innerText")
    assert "error: " in error_line and "context" in error_line.lower()  # the reason, without opening the row
    await page.screenshot(tmp_path / "report-40-overview.png")
    three = next(i for i, t in enumerate(ds["autoreason_trace"]) if t and t["iterations"] == 3
                 and any(r["winner"] != "A" for r in t["rounds"]))
    await page.click(f"#row-{three} > summary")
    assert await page.until(f"document.querySelectorAll('#row-{three} section.round').length") == 3
    assert await page.eval("location.hash") == f"#row-{three}"
    rounds = ds[three]["autoreason_trace"]["rounds"]
    origins = await page.eval(f"[...document.querySelectorAll('#row-{three} .origin')].map(e => e.textContent)")
    assert origins[0].startswith("A = the draft.") and "merges A and B, shown to the synthesizer as X1 = " in origins[0]
    won = next(k for k, r in enumerate(rounds) if r["winner"] != "A")
    assert origins[won + 1].startswith(f"A = round {won + 1}'s {rounds[won]['winner']}.")
    opened = await page.eval(f"[...document.querySelectorAll('#row-{three} section.round')].map(s =>"
                             " [...s.querySelectorAll('details.cand')].filter(d => d.open).map(d => d.className))")
    assert opened == [["cand win"]] * len(rounds)  # each round's winner is expanded, the others folded
    # AB revises A lightly: an inline word diff; B rewrites it: side by side, not interleaved strike-through.
    assert await page.eval(f"document.querySelectorAll('#row-{three} pre.diff ins').length") > 0
    cands = await page.eval(f"[...document.querySelectorAll('#row-{three} section.round')][0].innerText")
    assert "rewritten:" in cands and re.search(r"\+\d+ words? −\d+ vs A", cands)
    await page.screenshot(tmp_path / "report-40-row-expanded.png", f"#row-{three}")
    assert page.errors() == []


async def test_sort_filter_search_and_pages(page: Page, forty: tuple[Path, Dataset]) -> None:
    path, ds = forty
    await open_report(page, path)
    margins = [p["margin"] if s == "ok" else None for p, s in zip(ds["preference"], ds["autoreason_status"],
                                                                 strict=True)]
    await page.click(".lhead button[data-sort=m]")
    shown = await page.eval(VISIBLE_IDS)
    known = sorted((i for i, m in enumerate(margins) if m is not None), key=lambda i: (-margins[i], i))
    assert shown == known + [i for i, m in enumerate(margins) if m is None]  # no margin sorts last
    await page.click(".lhead button[data-sort=m]")
    assert (await page.eval(VISIBLE_IDS))[: len(known)] == sorted(known, key=lambda i: (margins[i], i))
    await page.choose("select[data-col=category]", "=code")
    assert await page.eval(VISIBLE_IDS) == sorted((i for i, c in enumerate(ds["category"]) if c == "code"),
                                                  key=lambda i: (margins[i] is None, margins[i] or 0, i))
    await page.choose("select[data-col=category]", "")
    await page.choose("#f-col", "id")  # a column with a value per row: filtered by "contains"
    await page.eval("(() => { const v = document.getElementById('f-val'); v.value = 'Q01';"
                    " v.dispatchEvent(new Event('input')); })()")
    assert await page.until(f"{VISIBLE_IDS}.length === 10")
    assert sorted(await page.eval(VISIBLE_IDS)) == list(range(10, 20))
    await page.eval("(() => { const v = document.getElementById('f-val'); v.value = '';"
                    " v.dispatchEvent(new Event('input')); })()")
    await page.until(f"{VISIBLE_IDS}.length === 40")
    await page.click(".lhead button[data-sort=i]")
    await page.type_search("TOPIC 12 to")
    assert await page.until(f"JSON.stringify({VISIBLE_IDS}) === '[12]'")
    assert await page.eval("document.getElementById('shown').textContent") == "1–1 of 1 row (40 in all)"
    await page.type_search("")
    await page.until(f"{VISIBLE_IDS}.length === 40")
    await page.choose("#f-status", "error")
    assert await page.eval(VISIBLE_IDS) == [38, 39]
    await page.choose("#f-status", "")
    await page.choose("#f-quality", "undecided")
    undecided = await page.eval(VISIBLE_IDS)
    assert 3 in undecided and all("topic 3" in ds[i]["prompt"] for i in undecided)
    await page.choose("#f-quality", "")
    await page.choose("#size", "25")
    assert await page.eval(VISIBLE_IDS) == list(range(25))
    await page.click("#next")
    assert await page.eval(VISIBLE_IDS) == list(range(25, 40))
    assert await page.eval("document.getElementById('page').textContent") == "page 2 of 2"
    await page.click('a[href="#row-3"]')  # the judges section links an undecided round to its row
    assert await page.until("document.getElementById('row-3') && document.getElementById('row-3').open")
    assert page.errors() == []


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds, run = demo_like()  # Dataset.map cannot run inside the test's event loop: build it here
    return write_report(ds, tmp_path_factory.mktemp("demo") / "report-demo.html", run=run)


@pytest.fixture(scope="module")
def payload_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ds, run = refine(Dataset.from_dict({"prompt": [f"Explain topic {i} {PAYLOAD}" for i in range(4)]}),
                     max_iterations=1)
    return write_report(ds, tmp_path_factory.mktemp("payload") / "payload.html", run=run)


async def test_demo_like_report_warns_about_positional_judges(page: Page, demo_report: Path,
                                                              tmp_path: Path) -> None:
    path = demo_report
    await open_report(page, path, "#row-1")
    assert await page.eval("document.getElementById('row-1').open") is True  # opened from the URL
    warning = await page.eval("document.getElementById('shown-order-warning').innerText")
    assert "100%" in warning and "by position" in warning
    assert await page.eval("document.getElementById('position-bias').innerText.includes('100%')")
    await page.screenshot(tmp_path / "report-demo.png")
    assert page.errors() == []


async def test_ten_thousand_rows_stay_fast_and_paged(page: Page, tmp_path: Path) -> None:
    path = write_report(synthetic_rows(10_000), tmp_path / "report-10k.html")
    size_mb = path.stat().st_size / 1e6
    started = time.perf_counter()
    await open_report(page, path, "#row-4321")  # a deep link into page 87 of 200
    loaded_s = time.perf_counter() - started
    first_ms = float(await page.eval("document.body.dataset.firstPaintMs"))
    print(f"10k rows: {size_mb:.1f} MB, first rows painted at {first_ms:.0f} ms after navigation start, "
          f"ready (all parsed) after {loaded_s:.2f} s")
    assert await page.eval("document.getElementById('row-4321').open") is True
    assert await page.eval("document.getElementById('page').textContent") == "page 87 of 200"
    assert await page.eval("document.querySelectorAll('details.row').length") == 50  # only the visible page
    await page.click("#first")
    await page.click("#next")
    assert await page.eval(VISIBLE_IDS) == list(range(50, 100))
    await page.click("#last")
    assert await page.eval(VISIBLE_IDS) == list(range(9950, 10000))
    await page.eval("location.hash = '#row-1234'")
    assert await page.until("document.getElementById('row-1234') && document.getElementById('row-1234').open")
    assert await page.eval("document.getElementById('page').textContent") == "page 25 of 200"
    await page.type_search("question 9876:")
    assert await page.until(f"JSON.stringify({VISIBLE_IDS}) === '[9876]'")
    await page.type_search("")
    await page.until(f"{VISIBLE_IDS}.length === 50")
    await page.click(".lhead button[data-sort=L]")
    lengths = await page.eval("[...document.querySelectorAll('#rows .c-L')].map(e => +e.textContent.replace(/,/g, ''))")
    assert lengths == sorted(lengths, reverse=True) and len(lengths) == 50
    await page.screenshot(tmp_path / "report-10k.png")
    assert page.errors() == []


async def test_model_text_is_shown_as_text_and_never_runs(page: Page, payload_report: Path) -> None:
    await open_report(page, payload_report)
    await page.eval("window.alert = function () { document.body.dataset.alerted = '1'; }")
    await page.click("#expand")
    await page.until("document.querySelectorAll('#rows section.round').length === 4")
    assert await page.eval("document.querySelectorAll('#rows img, #rows script').length") == 0
    prompts = await page.eval("[...document.querySelectorAll('#rows .body > pre:first-of-type')]"
                              ".map(e => e.textContent)")
    assert prompts == [f"Explain topic {i} {PAYLOAD}" for i in range(4)]
    assert await page.eval("document.body.dataset.alerted || null") is None
    assert not [e for e in page.events if e.get("method") == "Page.javascriptDialogOpening"]
    assert page.errors() == []
