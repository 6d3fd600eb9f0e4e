"""The studio driven in a real headless chromium: crop by dragging, captions, keep/drop, undo, a screenshot."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from collage_ext.core.types import Size
from collage_ext.kohya.datasets import glob_images
from collage_ext.pixels.crops import parse_crop_box

from .conftest import need_extra

need_extra()

from .conftest import BLUE, PORTRAIT, RED, Dataset, Server  # noqa: E402 (after the skip gate above)

#: A long booru-style caption: it reaches CLIP's second chunk, so the token view shows the boundary and
#: where phrase repetition copies the trigger word.
SHOWCASE_CAPTION = (
    "mychar, 1girl, solo, teal dress, full body, standing, looking at viewer, short hair, brown hair, "
    "sleeveless dress, bare arms, arms at sides, simple background, beige background, front view, "
    "flat color, minimalism, geometric shapes, triangle dress, round head, brown legs, centered, "
    "symmetrical, pastel colors, clean lines, vector art, illustration, full-length portrait, "
    "character reference"
)


def version(page: Any) -> int:
    return int(page.evaluate("document.body.dataset.version"))


def wait_after(page: Any, before: int) -> int:
    """Wait until the page has reloaded everything after a write (a newer version, check done)."""
    page.wait_for_function(
        f"+document.body.dataset.version > {before} && document.body.dataset.checked === document.body.dataset.version"
    )
    return version(page)


def open_editor(page: Any, image_id: str) -> None:
    page.click(f'.card[data-id="{image_id}"]')
    page.wait_for_selector("#editor:not([hidden])")
    page.wait_for_function(
        "document.getElementById('ed-img').complete && document.getElementById('ed-img').naturalWidth > 0"
    )


def frame_with(server: Server, name: str) -> tuple[dict[str, Any], np.ndarray]:
    """The first frame (earliest epoch) that holds the image ``name``, with its pixels as served to the page."""
    for epoch in range(1, 20):
        frames = server.http.get(f"{server.url}/api/frames", params={"epoch": epoch}).json()["frames"]
        frame = next((f for f in frames if any(s["name"] == name for s in f["sources"])), None)
        if frame is not None:
            break
    assert frame is not None, f"{name} is in no collage frame of epochs 1-19"
    png = server.http.get(f"{server.url}/api/frame-image", params={"epoch": epoch, "name": frame["name"]})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    return frame, np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB"))


def cell_pixels(frame: dict[str, Any], pixels: np.ndarray, name: str) -> np.ndarray:
    cell = next(c for c in frame["cells"] if Path(c["path"]).name == name)
    x, y, w, h = cell["rect"]
    return pixels[y : y + h, x : x + w].reshape(-1, 3)


def count(colour: tuple[int, int, int], pixels: np.ndarray) -> int:
    return int((np.abs(pixels.astype(int) - colour).sum(axis=1) < 30).sum())


def plan(server: Server, epoch: int = 1) -> list[tuple[str, tuple[str, ...]]]:
    frames = server.http.get(f"{server.url}/api/frames", params={"epoch": epoch}).json()["frames"]
    return [(f["layout"], tuple(s["name"] for s in f["sources"])) for f in frames]


def test_drag_a_crop_writes_the_sidecar_and_the_frame_shows_the_region(
    page: Any, server: Server, dataset: Dataset
) -> None:
    """Drag a box over the red half of mychar_00: its .crop holds those pixels and its frame cell turns red."""
    frame, pixels = frame_with(server, "mychar_00.png")
    before = cell_pixels(frame, pixels, "mychar_00.png")
    assert count(BLUE, before) > 0 and count(RED, before) > 0  # the whole image: both halves

    open_editor(page, "0/0/mychar_00.png")
    box = page.locator("#ed-img").bounding_box()
    assert (round(box["width"]), round(box["height"])) == (PORTRAIT[0] // 2, PORTRAIT[1] // 2)  # shown at half size
    start = (box["x"] + 210, box["y"] + 70)  # natural (420, 140): inside the red half (x >= 400)
    end = (box["x"] + 390, box["y"] + 322)  # natural (780, 644): a box of the image's own 5:7 shape
    v0 = version(page)
    shown_before = set(page.eval_on_selector_all(".edframe img", "els => els.map(e => e.src)"))
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 50, start[1] + 120, steps=4)
    page.mouse.move(*end, steps=6)
    page.mouse.up()
    wait_after(page, v0)

    sidecar = dataset.images / "mychar_00.crop"
    written = parse_crop_box(sidecar.read_text(encoding="utf-8"), Size(*PORTRAIT), source=str(sidecar))
    assert all(abs(got - want) <= 1 for got, want in zip(written, (420, 140, 780, 644))), written
    assert page.inner_text("#ed-crop").startswith(
        f"crop {written.left}, {written.top}, {written.right}, {written.bottom}"
    )
    # The page re-rendered the frames that hold the image: their thumbnails carry new pixel versions.
    shown_after = page.eval_on_selector_all(".edframe img", "els => els.map(e => e.src)")
    assert shown_after and not shown_before & set(shown_after)

    frame, pixels = frame_with(server, "mychar_00.png")
    after = cell_pixels(frame, pixels, "mychar_00.png")
    assert count(BLUE, after) == 0, "the cropped-away blue half still shows in the frame"
    shown = len(after) - count((24, 24, 24), after)  # the cell's pixels that are not #181818 padding
    assert shown > 0 and count(RED, after) > 0.9 * shown
    cell = next(c for c in frame["cells"] if Path(c["path"]).name == "mychar_00.png")
    assert cell["crop"] == list(written)

    # Clearing the box removes the sidecar, and the whole image is back in its frame.
    v1 = version(page)
    page.click("#ed-clear")
    wait_after(page, v1)
    assert not sidecar.exists()
    frame, pixels = frame_with(server, "mychar_00.png")
    assert count(BLUE, cell_pixels(frame, pixels, "mychar_00.png")) > 0


def test_edit_a_caption_updates_the_token_view_and_the_frame_caption(
    page: Any, server: Server, dataset: Dataset
) -> None:
    """A long caption typed into the editor: chunk 2 appears in the token view, then in the frame's caption."""
    open_editor(page, "0/0/mychar_01.png")
    assert "chunk 2" not in page.inner_text("#ed-tokens")
    extra = ", ".join(f"detail{i} tag" for i in range(30))
    text = f"mychar, 1girl, green dress, smiling at viewer, {extra}"
    page.fill("#ed-caption", text)
    page.wait_for_function("document.querySelector('#ed-tokens').innerText.includes('chunk 2')")
    assert "unsaved" in page.inner_text("#ed-tokens")
    v0 = version(page)
    page.click("#ed-save")
    wait_after(page, v0)

    assert (dataset.images / "mychar_01.txt").read_bytes() == (text + "\n").encode("utf-8")
    server_view = server.http.get(f"{server.url}/api/sources").json()
    source = next(s for s in server_view["sources"] if s["id"] == "0/0/mychar_01.png")
    shown_total = int(page.inner_text("#ed-tokens .toktotal"))
    assert shown_total == source["tokens"]["total"] > 75
    assert page.locator("#ed-tokens .brk").count() >= 1  # the chunk boundary is drawn
    # "mychar" is a repeat phrase: the page marks where the repetition copies it (a later chunk).
    assert page.locator("#ed-tokens .tok.inserted").count() >= 1

    frame_caption = page.inner_text(".edframe .framecap")
    assert "smiling at viewer" in frame_caption and "detail29 tag" in frame_caption
    frame, _ = frame_with(server, "mychar_01.png")
    assert "smiling at viewer" in frame["caption"]


def test_drop_and_restore_an_image_changes_the_plan_and_changes_it_back(
    page: Any, server: Server, dataset: Dataset
) -> None:
    """Drop moves the image and its sidecars where sd-scripts does not look; restore gives the same plan back."""
    original = plan(server)
    assert any("mychar_02.png" in names for _, names in original)
    open_editor(page, "0/0/mychar_02.png")
    v0 = version(page)
    page.click("#ed-drop")
    wait_after(page, v0)

    dropped = dataset.images / "_collage_studio" / "dropped"
    assert sorted(p.name for p in dropped.iterdir()) == ["mychar_02.png", "mychar_02.txt"]
    assert not (dataset.images / "mychar_02.png").exists()
    # sd-scripts' own listing (train_util.glob_images: not recursive) no longer sees it.
    assert str(dataset.images / "mychar_02.png") not in glob_images(str(dataset.images))
    changed = plan(server)
    assert changed != original and not any("mychar_02.png" in names for _, names in changed)
    assert "dropped" in page.get_attribute('.card[data-id="0/0/mychar_02.png"]', "class")

    v1 = version(page)
    page.click("#ed-drop")  # now "Restore to training"
    wait_after(page, v1)
    assert (dataset.images / "mychar_02.png").is_file() and (dataset.images / "mychar_02.txt").is_file()
    assert not any(dropped.iterdir())
    assert plan(server) == original


def test_undo_restores_the_previous_caption_byte_for_byte(page: Any, server: Server, dataset: Dataset) -> None:
    """A caption with CRLF, odd spacing and non-ASCII text comes back exactly after an edit and Undo."""
    caption = dataset.images / "mychar_03.txt"
    original = "mychar ,  1girl,orange dress, café terrace  \r\nsecond line ignored\r\n".encode()
    caption.write_bytes(original)
    server.http.post(f"{server.url}/api/reload", json={})
    page.reload()
    page.wait_for_function("document.body.dataset.checked !== undefined")
    open_editor(page, "0/0/mychar_03.png")
    page.fill("#ed-caption", "mychar, 1girl, orange dress")
    v0 = version(page)
    page.click("#ed-save")
    wait_after(page, v0)
    assert caption.read_bytes() != original
    assert not page.is_disabled("#ed-undo")
    assert "caption of mychar_03.png" in page.get_attribute("#ed-undo", "title")

    v1 = version(page)
    page.click("#ed-undo")
    wait_after(page, v1)
    assert caption.read_bytes() == original
    kept = list((dataset.images / "_collage_studio" / "history").iterdir())
    assert any(p.read_bytes() == original for p in kept)  # the replaced version was also kept on disk


def test_frames_view_shows_fill_span_and_links_to_sources(page: Any, server: Server) -> None:
    """The frames of an epoch with fill and spans; a source chip opens that image's editor; epochs change."""
    page.click('.tab[data-view="frames"]')
    page.wait_for_selector(".card.frame")
    frames = server.http.get(f"{server.url}/api/frames", params={"epoch": 1}).json()
    assert page.locator(".card.frame").count() == len(frames["frames"]) > 0
    first = frames["frames"][0]
    card = page.locator(f'.card.frame[data-frame="{first["name"]}"]')
    assert f"fill {round(100 * first['fill'])}%" in card.inner_text()
    chip = card.locator(".chip").first
    chip.click()
    page.wait_for_selector("#editor:not([hidden])")
    assert page.inner_text("#ed-name") == first["sources"][0]["name"]
    page.click("#ed-close")
    page.click("#enext")
    page.wait_for_function("document.querySelector('#framesummary').innerText.includes('epoch 2')")


def test_screenshot_of_the_studio(page: Any, server: Server, tmp_path: Path) -> None:
    """The README picture: the editor with a crop box and the frame it feeds, over the sources grid.

    Written to ``COLLAGE_STUDIO_SCREENSHOT`` when set (``docs/studio.png`` for the README), else to a temp file.
    """
    target = Path(os.environ.get("COLLAGE_STUDIO_SCREENSHOT") or tmp_path / "studio.png")
    server.http.post(
        f"{server.url}/api/crop",
        json={"id": "0/0/mychar_04.png", "box": [120, 40, 680, 1100]},
        headers={"Origin": server.url},
    )
    server.http.post(f"{server.url}/api/caption", json={"id": "0/0/mychar_04.png", "text": SHOWCASE_CAPTION})
    page.reload()
    page.wait_for_function("document.body.dataset.checked !== undefined")
    open_editor(page, "0/0/mychar_04.png")
    # Every image on screen has loaded (images off screen load lazily, when scrolled to: they never do here).
    page.wait_for_function(
        "[...document.images].filter(i => i.loading !== 'lazy' || (i.offsetParent !== null && "
        "i.getBoundingClientRect().top < innerHeight)).every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(target))
    with Image.open(target) as shot:
        assert shot.size == (1440, 960)
        assert len(shot.convert("RGB").getcolors(1 << 20) or []) > 50  # a real rendering, not a blank page


# -- the session token, framing, stale writes (issue 20 items 10, 12, 14) ------------------------------------------


def test_the_token_becomes_an_httponly_cookie_and_leaves_the_address(page: Any, server: Server, browser: Any) -> None:
    """Opened with the printed address, the page works, its address bar no longer shows the token, and scripts
    cannot read the cookie; a browser without the token gets only the "needs its token" page."""
    assert page.evaluate("location.search") == ""
    assert server.token not in page.url
    assert "collage_studio" not in page.evaluate("document.cookie")  # HttpOnly
    cookies = page.context.cookies()
    ours = [c for c in cookies if c["name"].startswith("collage_studio_")]
    assert len(ours) == 1 and ours[0]["httpOnly"] and ours[0]["sameSite"] == "Strict"
    # The page still works after the token left the address: reload it (the cookie alone carries the session).
    page.reload()
    page.wait_for_selector(".card[data-id]")
    stranger = browser.new_context()
    try:
        other = stranger.new_page()
        response = other.goto(server.url + "/")
        assert response.status == 403 and "needs its access token" in other.inner_text("body")
        assert other.locator(".card").count() == 0
        assert other.goto(server.url + "/api/sources").status == 403
    finally:
        stranger.close()


def test_another_page_cannot_frame_the_studio(page: Any, server: Server) -> None:
    """Clickjacking: a page on another origin (here another port of this computer, so the Strict cookie is sent)
    puts the studio in an iframe; the browser must refuse to show it."""
    import http.server
    import threading

    framing = (
        f'<!DOCTYPE html><title>prize</title><iframe id="f" src="{server.url}/" width="900" height="600"></iframe>'
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = framing.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        attacker = page.context.new_page()  # the same browser, already holding the studio's cookie
        # The iframe's one navigation: to the studio if the browser showed it, else to the browser's error page.
        with attacker.expect_event("framenavigated", predicate=lambda frame: frame.parent_frame is not None):
            attacker.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        attacker.wait_for_load_state("load")
        framed = [f for f in attacker.frames if f != attacker.main_frame]
        assert framed, "the iframe was not created"
        for frame in framed:
            assert not frame.url.startswith(server.url), f"the studio was shown inside another page: {frame.url}"
        attacker.close()
    finally:
        evil.shutdown()
        evil.server_close()
        thread.join(10)


def test_a_stale_caption_save_is_refused_and_the_page_says_so(page: Any, server: Server, dataset: Dataset) -> None:
    """Two tabs edit one caption: the second save would silently replace the first. It is refused with a message,
    and the text typed in the second tab stays in its editor."""
    second = page.context.new_page()
    second.goto(server.url + "/")  # the cookie from the first tab
    second.wait_for_selector(".card[data-id]")
    second.wait_for_function("document.body.dataset.checked !== undefined")
    for tab in (page, second):
        open_editor(tab, "0/0/mychar_05.png")
    page.fill("#ed-caption", "mychar, saved in tab one")
    v0 = version(page)
    page.click("#ed-save")
    wait_after(page, v0)
    caption = dataset.images / "mychar_05.txt"
    assert caption.read_text(encoding="utf-8") == "mychar, saved in tab one\n"

    second.fill("#ed-caption", "mychar, typed in tab two")
    second.click("#ed-save")
    second.wait_for_selector("#toast.error:not([hidden])")
    assert "changed since this page read it" in second.inner_text("#toast")
    assert caption.read_text(encoding="utf-8") == "mychar, saved in tab one\n"
    assert second.input_value("#ed-caption") == "mychar, typed in tab two"
    second.close()
