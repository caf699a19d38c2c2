"""Open a page in headless Chromium and report what happened: console messages, uncaught errors,
requests, the rendered text, a screenshot. Used by tests/test_report.py and to make the README's
screenshot (a test helper, not part of the library)::

    python tests/browser.py runs/demo/report.html --screenshot docs/report-screenshot.png

Talks the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4): no Python
package and no network port are needed, only a Chromium binary (Debian: ``apt-get install chromium``;
``SKILLNEURONS_CHROMIUM`` names another).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Chromium", "PageCheck", "check_page", "find_chromium"]

FLAGS = [
    "--headless",
    "--no-sandbox",  # running as root (containers) needs it
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
]


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary: ``$SKILLNEURONS_CHROMIUM``, else the usual names."""
    env = os.environ.get("SKILLNEURONS_CHROMIUM")
    if env:
        return env if Path(env).is_file() else shutil.which(env)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """A headless Chromium driven over the DevTools pipe; a context manager (always closed)."""

    def __init__(self, executable: str | None = None, *, width: int = 1280, height: int = 900) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise FileNotFoundError("no Chromium found: install it (apt-get install chromium)")
        self.profile = tempfile.mkdtemp(prefix="sn-chromium-")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()

        def child_fds() -> None:  # the protocol pipe must be fds 3 (commands in) and 4 (replies out)
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                exe,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=child_fds,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._w, self._r = to_child_w, from_child_r
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None
        self.width, self.height = width, height

    # ---- protocol ------------------------------------------------------------------------------
    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise EOFError("Chromium closed the DevTools pipe (did it start?)")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return dict(json.loads(msg))

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float = 30.0,
        browser: bool = False,
    ) -> dict[str, Any]:
        """Call ``method``; events that arrive meanwhile are kept in :attr:`events`."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            e = self._read(deadline)
            if e.get("method") == method:
                return e
            self.events.append(e)

    # ---- page ----------------------------------------------------------------------------------
    def open(self, url: str, timeout: float = 30.0, *, init_script: str | None = None) -> None:
        """A new tab on ``url`` (console, errors and requests recorded from the start); waits for load.
        ``init_script`` runs in the page before its own scripts (e.g. to record ``alert`` calls)."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        if init_script:
            self.send("Page.addScriptToEvaluateOnNewDocument", {"source": init_script})
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired", timeout)

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (JSON-able results)."""
        res = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression!r} raised: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def screenshot(
        self,
        path: str | os.PathLike[str],
        *,
        full_page: bool = False,
        max_height: int | None = None,
        scale: float = 1.0,
    ) -> Path:
        """A PNG of the viewport, or of the page from its top (``full_page``, cut at ``max_height``)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page or scale != 1.0:
            h = self.evaluate("document.documentElement.scrollHeight") if full_page else self.height
            h = min(int(h), max_height) if max_height else int(h)
            params.update(
                clip={"x": 0, "y": 0, "width": self.width, "height": h, "scale": scale},
                captureBeyondViewport=True,
            )
        data = base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True, timeout=5)
        except (OSError, RuntimeError, TimeoutError, EOFError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class PageCheck:
    """What loading a page did."""

    console: list[tuple[str, str]] = field(
        default_factory=list
    )  #: (level, text) of console calls / log entries
    errors: list[str] = field(default_factory=list)  #: uncaught exceptions
    requests: list[str] = field(default_factory=list)  #: URLs requested (the page itself included)
    text: str = ""  #: document.body.innerText
    screenshot: Path | None = None

    @property
    def console_errors(self) -> list[str]:
        return [t for level, t in self.console if level in ("error", "assert")] + self.errors

    @property
    def remote_requests(self) -> list[str]:
        """Requests that would need a network (anything but file: and data:)."""
        return [u for u in self.requests if not u.startswith(("file:", "data:"))]


def collect(events: list[dict[str, Any]], check: PageCheck) -> None:
    """Record console messages, uncaught errors and requests from DevTools ``events``."""
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            check.console.append((str(p.get("type")), text))
        elif m == "Log.entryAdded":
            entry = p.get("entry", {})
            check.console.append((str(entry.get("level")), str(entry.get("text"))))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            check.errors.append(str(d.get("exception", {}).get("description") or d.get("text")))
        elif m == "Network.requestWillBeSent":
            check.requests.append(str(p.get("request", {}).get("url")))


def check_page(
    path: str | os.PathLike[str],
    screenshot: str | os.PathLike[str] | None = None,
    *,
    width: int = 1280,
    height: int = 900,
    full_page: bool = False,
    max_height: int | None = None,
    scale: float = 1.0,
    executable: str | None = None,
) -> PageCheck:
    """Load a local HTML file in headless Chromium and return a :class:`PageCheck`."""
    url = Path(path).resolve().as_uri()
    check = PageCheck()
    with Chromium(executable, width=width, height=height) as c:
        c.open(url)
        check.text = str(c.evaluate("document.body.innerText"))
        if screenshot is not None:
            check.screenshot = c.screenshot(
                screenshot, full_page=full_page, max_height=max_height, scale=scale
            )
        collect(c.events, check)
    return check


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="load an HTML report in headless Chromium; report errors; screenshot"
    )
    ap.add_argument("page")
    ap.add_argument("--screenshot", help="PNG to write")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument(
        "--full-page", action="store_true", help="capture the page from its top, not just the viewport"
    )
    ap.add_argument("--max-height", type=int, help="with --full-page: cut the capture at this height (px)")
    ap.add_argument("--scale", type=float, default=1.0, help="scale of the screenshot (e.g. 0.75)")
    args = ap.parse_args(argv)
    res = check_page(
        args.page,
        args.screenshot,
        width=args.width,
        height=args.height,
        full_page=args.full_page,
        max_height=args.max_height,
        scale=args.scale,
    )
    for level, text in res.console:
        print(f"console {level}: {text}")
    for err in res.errors:
        print(f"uncaught: {err}")
    print(
        f"{len(res.requests)} request(s), {len(res.remote_requests)} needing a network; "
        f"{len(res.text)} characters of text" + (f"; screenshot {res.screenshot}" if res.screenshot else "")
    )
    return 1 if res.console_errors or res.remote_requests else 0


if __name__ == "__main__":
    raise SystemExit(main())
