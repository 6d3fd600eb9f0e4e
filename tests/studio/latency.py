"""Edits made in the studio page the way a user makes them, timed from the input to what changes on screen.

Shared by ``test_latency.py`` (which fails when the page does not update, never on time) and
``benchmarks/bench_curation.py --browser`` (which reports the times). Needs only a Playwright page.
"""

from __future__ import annotations

import time
from typing import Any

#: For each frame image in the editor: its src, whether it has loaded, and a checksum of its pixels
#: (drawn into a canvas: the frames come from the page's own origin, so the pixels are readable).
FRAME_PIXELS = """() => Array.from(document.querySelectorAll('#ed-frames .edframe img')).map((img) => {
  if (!img.complete || !img.naturalWidth) return [img.getAttribute('src'), false, null];
  const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0; for (let i = 0; i < d.length; i += 7) sum = (sum * 31 + d[i]) % 1000000007;
  return [img.getAttribute('src'), true, sum];
})"""


def open_editor(page: Any, image_id: str, timeout: float = 60_000) -> None:
    """Click the image's card and wait until the editor shows it and its frames have loaded."""
    page.click(f'.card[data-id="{image_id}"]')
    page.wait_for_selector("#editor:not([hidden])")
    page.wait_for_function(
        "document.getElementById('ed-img').complete && document.getElementById('ed-img').naturalWidth > 0",
        timeout=timeout,
    )
    frames_loaded(page, timeout)


def frames_loaded(page: Any, timeout: float = 60_000) -> list[Any]:
    page.wait_for_function(f"({FRAME_PIXELS})().every((x) => x[1])", timeout=timeout)
    return page.evaluate(FRAME_PIXELS)


def drag_crop(page: Any, box: tuple[float, float, float, float]) -> None:
    """Drag a new crop box in the editor; ``box`` is (left, top, right, bottom) as fractions of the shown image."""
    where = page.locator("#ed-img").bounding_box()
    x0, y0 = where["x"] + box[0] * where["width"], where["y"] + box[1] * where["height"]
    x1, y1 = where["x"] + box[2] * where["width"], where["y"] + box[3] * where["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=3)
    page.mouse.move(x1, y1, steps=3)


def crop_until_frames_change(
    page: Any,
    box: tuple[float, float, float, float],
    timeout: float = 60_000,
) -> tuple[float, list[Any], list[Any]]:
    """Drag a crop, release it, and wait until every frame image of the editor shows new pixels.

    Returns the seconds from the release of the mouse button to the last frame image loaded with
    changed pixels, and the frames' (src, loaded, checksum) before and after. Raises Playwright's
    TimeoutError when the frames do not change within ``timeout`` ms.
    """
    before = frames_loaded(page, timeout)
    old = {b[0] for b in before}
    drag_crop(page, box)
    start = time.perf_counter()
    page.mouse.up()
    if before:
        # Done when every frame image is new, loaded and some show new pixels, or when the cropped image left
        # every frame (too small for a cell now: the editor says it trains as a single image).
        sums = [b[2] for b in before]
        page.wait_for_function(
            f"""(() => {{ const now = ({FRAME_PIXELS})(); const old = {sorted(old)!r}; const sums = {sums!r};
                 if (!now.length) return document.getElementById('ed-frames').innerText.includes('single image');
                 return now.every((x) => x[1] && !old.includes(x[0])) && now.some((x) => !sums.includes(x[2])); }})""",
            timeout=timeout,
            polling=10,
        )
    elapsed = time.perf_counter() - start
    return elapsed, before, page.evaluate(FRAME_PIXELS)


def caption_until_tokens_change(page: Any, text: str, timeout: float = 60_000) -> float:
    """Type a caption, save it, and wait until the saved token view counts it; seconds from the click."""
    page.fill("#ed-caption", text)
    start = time.perf_counter()
    page.click("#ed-save")
    page.wait_for_function(
        "document.querySelector('#ed-tokens .tokhead') && "
        "!document.querySelector('#ed-tokens').innerText.includes('unsaved') && "
        "document.querySelector('#ed-caption').dataset.dirty === '0'",
        timeout=timeout,
        polling=10,
    )
    return time.perf_counter() - start


def drop_until_counted(page: Any, timeout: float = 60_000) -> float:
    """Click "Drop from training" and wait until the sources count drops by one; seconds from the click."""
    before = int(page.inner_text("#nsources"))
    start = time.perf_counter()
    page.click("#ed-drop")
    page.wait_for_function(
        f"+document.querySelector('#nsources').innerText === {before - 1}", timeout=timeout, polling=10
    )
    return time.perf_counter() - start
