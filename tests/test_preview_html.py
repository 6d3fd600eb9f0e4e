"""The preview contact sheet in a real headless Chromium: it loads, shows every frame, logs no errors.

Chromium is Debian's ``chromium`` package. When it is missing and the tests run as root on a
Debian-like system with ``apt-get``, the session fixture installs it (``apt-get update && apt-get
install -y chromium``; set ``COLLAGE_EXT_NO_APT=1`` to forbid that); otherwise the tests are
skipped with the reason.

The page is driven over the DevTools protocol with a tiny stdlib WebSocket client: console
messages (``Runtime.consoleAPICalled``), uncaught exceptions (``Runtime.exceptionThrown``) and
browser log entries such as failed resource loads (``Log.entryAdded``) are collected while the page
loads; then every ``<img>`` is asked whether it decoded. A control page with a broken image and a
script error proves the collector sees such problems.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import write_images, write_toml

from collage_ext.cli import main

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-port=0",
         "--remote-allow-origins=*", "--window-size=1280,900"]


def _find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; installed with apt-get where that is possible, else the tests skip."""
    found = _find_browser()
    if found:
        return found
    if os.environ.get("COLLAGE_EXT_NO_APT"):
        pytest.skip("chromium is not installed and COLLAGE_EXT_NO_APT forbids installing it")
    if not shutil.which("apt-get") or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "apt-get install chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], check=True,
                       capture_output=True, timeout=900, env=env)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"chromium is not installed and apt-get could not install it: {exc}")
    found = _find_browser()
    if not found:
        pytest.skip("apt-get install chromium succeeded but no chromium binary is on PATH")
    return found


class DevTools:
    """A minimal DevTools-protocol client over one WebSocket (RFC 6455, client frames masked)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        host_port, _, path = url.removeprefix("ws://").partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"DevTools refused the WebSocket: {head[:200]!r}")
        self.buffer = head.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _send(self, payload: bytes, opcode: int = 1) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _message(self) -> dict[str, Any]:
        parts = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack(">H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack(">Q", self._read(8))
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 9:  # ping
                self._send(payload, opcode=10)
                continue
            if opcode == 8:
                raise ConnectionError("DevTools closed the WebSocket")
            parts += payload
            if b0 & 0x80:
                return json.loads(parts.decode("utf-8"))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its result (events that arrive meanwhile are kept)."""
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}).encode())
        while True:
            message = self._message()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30.0) -> None:
        """Wait for an event."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            self.events.append(self._message())
        raise TimeoutError(f"no {method} within {timeout} s")


@pytest.fixture()
def browser(chromium: str) -> Iterator[DevTools]:
    """A fresh headless Chromium (own --user-data-dir) and a DevTools connection to its page."""
    profile = tempfile.mkdtemp(prefix="collage-chromium-")
    proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = None
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not start (exit {proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            targets = json.load(response)
        page = next(t for t in targets if t.get("type") == "page")
        client = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Runtime", "Log", "Page"):
            client.call(f"{domain}.enable")
        yield client
    finally:
        if client is not None:
            client.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def load_page(client: DevTools, path: Path) -> dict[str, Any]:
    """Open a file, wait for load, and report problems and image states."""
    client.events.clear()
    client.call("Page.navigate", url=path.resolve().as_uri())
    client.wait_for("Page.loadEventFired")
    time.sleep(0.3)  # let late console/log events arrive
    state = client.call("Runtime.evaluate", returnByValue=True, expression=(
        "JSON.stringify({images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
        "i.naturalWidth]), figures: document.querySelectorAll('figure').length, title: document.title})"))
    info = json.loads(state["result"]["value"])
    client.call("Runtime.evaluate", expression="1")  # flush events queued before the result
    problems = []
    for event in client.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
            problems.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            problems.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
    info["problems"] = problems
    shot = client.call("Page.captureScreenshot", format="png")
    info["screenshot_bytes"] = len(base64.b64decode(shot["data"]))
    return info


def assert_contact_sheet_ok(info: dict[str, Any], frames: int) -> None:
    """No console errors, one figure per frame, every image decoded."""
    assert info["problems"] == []
    assert info["figures"] == frames > 0
    broken = [src for src, complete, width in info["images"] if not (complete and width > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert len(info["images"]) == frames and info["screenshot_bytes"] > 10_000


def test_preview_contact_sheet_in_chromium(browser: DevTools, tmp_path: Path) -> None:
    """collage-ext preview: index.html shows every frame's thumbnail, with no console errors."""
    config = write_toml(tmp_path / "d.toml", write_images(tmp_path / "img", 10), repeats=3)
    out = tmp_path / "preview"
    assert main(["preview", str(config), "--out", str(out), "--seed", "1"]) == 0
    frames = len(json.loads((out / "manifest.json").read_text(encoding="utf-8"))["frames"])
    assert_contact_sheet_ok(load_page(browser, out / "index.html"), frames)


def test_demo_contact_sheet_in_chromium(browser: DevTools, tmp_path: Path) -> None:
    """The README demo's index.html, as a new user opens it."""
    out = tmp_path / "demo_out"
    assert main(["demo", "--out", str(out)]) == 0
    frames = len(json.loads((out / "manifest.json").read_text(encoding="utf-8"))["frames"])
    info = load_page(browser, out / "index.html")
    assert_contact_sheet_ok(info, frames)
    assert info["title"] == "collage-ext demo"


def test_the_harness_sees_errors(browser: DevTools, tmp_path: Path) -> None:
    """Control: a missing image and a script error are reported (so a clean result means something)."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img src="missing.png"><script>console.error("boom"); undefinedFunction();</script>'
                    "</body></html>", encoding="utf-8")
    info = load_page(browser, page)
    assert any("boom" in p for p in info["problems"])
    assert any(p.startswith("exception") for p in info["problems"])
    assert any("missing.png" in p or "ERR_FILE_NOT_FOUND" in p for p in info["problems"])
    assert info["images"][0][2] == 0
