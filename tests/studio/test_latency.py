"""Edits in a real browser, timed from the click to what changes on screen (issue 21).

Each test fails when the page does not update (the frame keeps its old pixels, the token view its
old count, the sources count its old number), never on how long it took: the time is recorded as a
test property (``--junitxml``) and printed (``-s``). ``benchmarks/bench_curation.py --browser`` runs
the same edits on 200 photos and reports p50 / p95.
"""

from __future__ import annotations

from typing import Any

from .conftest import Server, need_extra
from .latency import caption_until_tokens_change, crop_until_frames_change, drop_until_counted, open_editor

need_extra()


def framed_image(server: Server) -> str:
    """An image that sits in a collage frame of epoch 1 (the epoch the page shows)."""
    frames = server.http.get(f"{server.url}/api/frames", params={"epoch": 1}).json()["frames"]
    assert frames, "the test dataset plans no collage frame in epoch 1"
    return str(frames[0]["sources"][0]["id"])


def test_a_dragged_crop_shows_in_its_frames(page: Any, server: Server, record_property: Any) -> None:
    image = framed_image(server)
    open_editor(page, image)
    seconds, before, after = crop_until_frames_change(page, (0.25, 0.2, 0.75, 0.7))  # the image's own aspect: same plan
    assert before and len(after) == len(before)
    assert all(a[1] for a in after) and {a[2] for a in after} != {b[2] for b in before}
    record_property("crop_to_frame_seconds", round(seconds, 3))
    print(f"crop -> updated frame image: {seconds:.3f} s")
    # A second crop of the same image changes the frames again (nothing is stuck in a cache).
    seconds, before, after = crop_until_frames_change(page, (0.1, 0.35, 0.6, 0.85))
    assert {a[2] for a in after} != {b[2] for b in before}
    record_property("second_crop_to_frame_seconds", round(seconds, 3))


def test_a_saved_caption_shows_in_the_token_view(page: Any, server: Server, record_property: Any) -> None:
    image = framed_image(server)
    open_editor(page, image)
    old = int(page.inner_text("#ed-tokens .toktotal"))
    text = "mychar, 1girl, " + ", ".join(f"new tag {i}" for i in range(12))
    page.fill("#ed-caption", text)
    page.wait_for_function("document.querySelector('#ed-tokens').innerText.includes('unsaved')")
    typed = int(page.inner_text("#ed-tokens .toktotal"))
    assert typed != old
    seconds = caption_until_tokens_change(page, text)
    assert int(page.inner_text("#ed-tokens .toktotal")) == typed
    page.wait_for_function(
        "document.querySelector('.edframe .framecap').innerText.includes('new tag 11')"
    )  # then the frame
    record_property("caption_to_token_view_seconds", round(seconds, 3))
    print(f"caption save -> token view: {seconds:.3f} s")


def test_a_drop_shows_in_the_counts(page: Any, server: Server, record_property: Any) -> None:
    image = framed_image(server)
    open_editor(page, image)
    before = int(page.inner_text("#nsources"))
    seconds = drop_until_counted(page)
    assert int(page.inner_text("#nsources")) == before - 1
    assert "dropped" in page.get_attribute(f'.card[data-id="{image}"]', "class")
    record_property("drop_to_counts_seconds", round(seconds, 3))
    print(f"drop -> counts: {seconds:.3f} s")
