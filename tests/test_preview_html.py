"""The preview contact sheet in a real headless Chromium: it loads, shows every frame, logs no errors.

The browser is the shared ``browser`` fixture (``tests/conftest.py``): Debian's chromium driven by Playwright,
never installed or downloaded by a test. While a page loads, console errors and warnings, uncaught exceptions and
failed requests (a missing image) are collected; then every ``<img>`` is asked whether it decoded. A control
page with a broken image and a script error proves the collector sees such problems.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collage_ext.cli import main
from test_cli import write_images, write_toml

PAGE_STATE = """() => ({
    images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]),
    figures: document.querySelectorAll('figure').length,
    title: document.title,
})"""


def load_page(browser: Any, path: Path) -> dict[str, Any]:
    """Open a file in a fresh context, wait for its load event, and report problems and image states.

    Playwright delivers a page's events in the order the browser sent them, so every message logged before the
    load event has been collected when ``goto`` returns: nothing is waited for by the clock.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type in PROBLEMS else None)
    page.on("pageerror", lambda exc: problems.append(f"exception: {exc}"))
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url} {request.failure}"))
    try:
        page.goto(path.resolve().as_uri(), wait_until="load")
        info: dict[str, Any] = page.evaluate(PAGE_STATE)
        info["screenshot_bytes"] = len(page.screenshot())
    finally:
        context.close()
    info["problems"] = problems
    return info


#: Console message types that count as a problem.
PROBLEMS = ("error", "assert", "warning")


def assert_contact_sheet_ok(info: dict[str, Any], frames: int) -> None:
    """No console errors, one figure per frame, every image decoded."""
    assert info["problems"] == []
    assert info["figures"] == frames > 0
    broken = [src for src, complete, width in info["images"] if not (complete and width > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert len(info["images"]) == frames and info["screenshot_bytes"] > 10_000


def test_preview_contact_sheet_in_chromium(browser: Any, tmp_path: Path) -> None:
    """collage-ext preview: index.html shows every frame's thumbnail, with no console errors."""
    config = write_toml(tmp_path / "d.toml", write_images(tmp_path / "img", 10), repeats=3)
    out = tmp_path / "preview"
    assert main(["preview", str(config), "--out", str(out), "--seed", "1"]) == 0
    frames = len(json.loads((out / "manifest.json").read_text(encoding="utf-8"))["frames"])
    assert_contact_sheet_ok(load_page(browser, out / "index.html"), frames)


def test_demo_contact_sheet_in_chromium(browser: Any, tmp_path: Path) -> None:
    """The README demo's index.html, as a new user opens it."""
    out = tmp_path / "demo_out"
    assert main(["demo", "--out", str(out)]) == 0
    frames = len(json.loads((out / "manifest.json").read_text(encoding="utf-8"))["frames"])
    info = load_page(browser, out / "index.html")
    assert_contact_sheet_ok(info, frames)
    assert info["title"] == "collage-ext demo"


def test_the_harness_sees_errors(browser: Any, tmp_path: Path) -> None:
    """Control: a missing image and a script error are reported (so a clean result means something)."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="missing.png"><script>console.error("boom"); undefinedFunction();</script>'
        "</body></html>",
        encoding="utf-8",
    )
    info = load_page(browser, page)
    assert any("boom" in p for p in info["problems"])
    assert any(p.startswith("exception") for p in info["problems"])
    assert any("missing.png" in p or "ERR_FILE_NOT_FOUND" in p for p in info["problems"])
    assert info["images"][0][2] == 0
