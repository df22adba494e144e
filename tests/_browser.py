"""Open an HTML page in a real headless Chromium and report what a person would see go wrong.

Chromium (Debian's ``chromium`` package; ``.ci/run`` installs it) is driven over the DevTools
protocol: the page is loaded from disk, every console error, uncaught exception and failed
request is collected, and each ``<img>`` is checked to have decoded (``naturalWidth > 0``). With
``fonts_of=SELECTOR``, the text of each matching element is measured and the fonts Chromium drew it
with are asked for (``CSS.getPlatformFontsForNode``): a name drawn as tofu has no Hangul font there.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class RenderedText:
    text: str
    width: float  # px, the text's laid-out width
    fonts: dict[str, int]  # family -> glyphs of the text drawn with it

    def drawn_by(self, families: tuple[str, ...]) -> int:
        """Glyphs of the text drawn with one of ``families``."""
        return sum(glyphs for family, glyphs in self.fonts.items() if family in families)


@dataclass
class PageCheck:
    title: str = ""
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    svgs: int = 0
    texts: list[RenderedText] = field(default_factory=list)  # the elements ``fonts_of`` selects, in document order


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_page(page: Path, *, timeout: float = 60.0, fonts_of: str | None = None) -> PageCheck:
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed (Debian: apt-get install chromium; .ci/run does it)")
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="pawpipe-chromium-")
    proc = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        target = _page_target(port, timeout)
        ws = websocket.create_connection(target, timeout=timeout)
        try:
            return _load_and_inspect(ws, page.resolve().as_uri(), timeout, fonts_of)
        finally:
            ws.close()
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _page_target(port: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as reply:
                pages = [t for t in json.load(reply) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"chromium did not open its DevTools port {port}")
        time.sleep(0.1)


def _load_and_inspect(ws: websocket.WebSocket, url: str, timeout: float, fonts_of: str | None) -> PageCheck:
    ids = iter(range(1, 1_000_000))
    check = PageCheck()

    def send(method: str, **params) -> int:
        number = next(ids)
        ws.send(json.dumps({"id": number, "method": method, "params": params}))
        return number

    def until(predicate) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(ws.recv())
            _collect(message, check)
            if predicate(message):
                return message
        raise TimeoutError(f"{url}: no answer from chromium within {timeout} s")

    for domain in ("Runtime", "Log", "Page", "Network"):
        until(lambda m, n=send(f"{domain}.enable"): m.get("id") == n)
    send("Page.navigate", url=url)
    until(lambda m: m.get("method") == "Page.loadEventFired")
    script = (
        "JSON.stringify({title: document.title, svgs: document.querySelectorAll('svg').length, images: "
        "Array.from(document.images).map(i => [i.alt || i.src.slice(0, 80), i.complete && i.naturalWidth > 0])})"
    )
    reply = until(lambda m, n=send("Runtime.evaluate", expression=script, returnByValue=True): m.get("id") == n)
    found = json.loads(reply["result"]["result"]["value"])
    check.title, check.svgs, check.images = found["title"], found["svgs"], len(found["images"])
    check.broken_images = [name for name, ok in found["images"] if not ok]
    if fonts_of:
        check.texts = _rendered_texts(
            fonts_of, lambda method, **params: until(lambda m, n=send(method, **params): m.get("id") == n)
        )
    return check


def _rendered_texts(selector: str, call) -> list[RenderedText]:
    """Each element's text, its width (a range around its contents) and the platform fonts that drew it."""
    for domain in ("DOM", "CSS"):
        call(f"{domain}.enable")
    root = call("DOM.getDocument", depth=0)["result"]["root"]["nodeId"]
    nodes = call("DOM.querySelectorAll", nodeId=root, selector=selector)["result"]["nodeIds"]
    script = (
        f"JSON.stringify(Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => {{ const r = "
        "document.createRange(); r.selectNodeContents(e); return [e.textContent, r.getBoundingClientRect().width]; "
        f"}}))"
    )
    boxes = json.loads(call("Runtime.evaluate", expression=script, returnByValue=True)["result"]["result"]["value"])
    return [
        RenderedText(
            text,
            width,
            {
                f["familyName"]: f["glyphCount"]
                for f in call("CSS.getPlatformFontsForNode", nodeId=node)["result"]["fonts"]
            },
        )
        for node, (text, width) in zip(nodes, boxes, strict=True)
    ]


def _collect(message: dict, check: PageCheck) -> None:
    method, params = message.get("method"), message.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        check.errors.append(
            "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", []))
        )
    elif method == "Runtime.exceptionThrown":
        check.errors.append("exception: " + params["exceptionDetails"].get("text", ""))
    elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
        check.errors.append("log: " + params["entry"].get("text", ""))
    elif method == "Network.loadingFailed":
        check.errors.append("request failed: " + params.get("errorText", ""))
