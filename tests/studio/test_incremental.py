"""An edit re-does only what it touches: the frames that hold the image, that image's measures (issue 21)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from collage_ext.commands import check
from collage_ext.plan import framesets
from collage_ext.plan.framesets import FrameJob
from collage_ext.studio.cache import ByteLRU
from collage_ext.studio.model import Studio

from .conftest import Dataset, draw_person


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Every frame rendered and every image decoded for check, by name / path (check on one process, to count)."""
    monkeypatch.setenv("COLLAGE_EXT_JOBS", "1")
    seen: dict[str, list[Any]] = {"render": [], "measure": []}
    render, measure = FrameJob.render, check._measure_file

    def counting_render(self: FrameJob, **kwargs: Any) -> Any:
        seen["render"].append([s.path for s in self.sources])
        return render(self, **kwargs)

    monkeypatch.setattr(framesets.FrameJob, "render", counting_render)
    monkeypatch.setattr(check, "_measure_file", lambda item: seen["measure"].append(item[0]) or measure(item))
    return seen


def show_all(studio: Studio, epoch: int = 1) -> dict[str, bytes]:
    """Every frame of the epoch as the page asks for it (thumbnails), by name."""
    frames = studio.frames(epoch)["frames"]
    return {f["name"]: studio.frame_image(epoch, f["name"], thumb=True) for f in frames}


def settle(studio: Studio) -> None:
    """Wait for the background pre-render an edit starts (so counts are not racing it)."""
    studio._background.submit(lambda: None).result(timeout=60)


def test_a_crop_renders_only_the_frames_that_hold_the_image(dataset: Dataset, counted: dict[str, list[Any]]) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    before = show_all(studio)
    assert len(before) >= 2 and len(counted["render"]) == len(before)
    studio.check(1)
    assert len(counted["measure"]) == 7
    counted["render"].clear(), counted["measure"].clear()

    target = next(f for f in studio.frames(1)["frames"])["sources"][0]
    path = str(dataset.images / target["name"])
    studio.set_crop(target["id"], [200, 280, 600, 840])  # the image's own 5:7 shape: the same groups
    settle(studio)
    after = show_all(studio)
    holding = [f["name"] for f in studio.frames(1)["frames"] if any(s["id"] == target["id"] for s in f["sources"])]
    assert holding and all(path in paths for paths in counted["render"])  # only frames with the edited image
    assert len(counted["render"]) == len(holding) < len(after)
    assert all(after[n] != before[n] for n in holding)
    assert all(after[n] == before[n] for n in after if n not in holding and n in before)
    studio.check(1)
    assert counted["measure"] == []  # a crop box does not change the image file: its measures stand


def test_a_caption_edit_renders_nothing_and_answers_before_the_plan_is_read(dataset: Dataset,
                                                                            counted: dict[str, list[Any]],
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    show_all(studio)
    studio.check(1)
    counted["render"].clear(), counted["measure"].clear()
    rereads: list[int] = []
    reread = studio._reread
    monkeypatch.setattr(studio, "_reread", lambda: rereads.append(1) or reread())
    studio._background.shutdown(wait=True)  # no pre-render: what the write itself does is measured

    class Inline:
        def submit(self, *args: Any) -> None:
            pass

    studio._background = Inline()  # type: ignore[assignment]
    answer = studio.set_caption("0/0/mychar_01.png", "mychar, 1girl, green dress, a brand new tag")
    assert rereads == [] and answer["tokens"]["total"] > 0  # the plan is read again on the next read, not now
    frames = studio.frames(1)["frames"]
    assert rereads == [1]
    assert any("a brand new tag" in f["caption"] for f in frames)
    show_all(studio)
    assert counted["render"] == []  # captions do not change pixels: every frame comes from the cache
    studio.check(1)
    assert counted["measure"] == []


def test_a_replaced_image_is_measured_and_rendered_again(dataset: Dataset, counted: dict[str, list[Any]]) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    before = show_all(studio)
    studio.check(1)
    counted["render"].clear(), counted["measure"].clear()
    path = dataset.images / "mychar_03.png"
    draw_person((800, 1120), (10, 10, 10), (250, 250, 250)).save(path)  # same size, new pixels
    studio.reload()  # "Reload files"
    after = show_all(studio)
    assert counted["render"] and all(str(path) in paths for paths in counted["render"])
    assert any(after[n] != before[n] for n in after if n in before)
    studio.check(1)
    assert counted["measure"] == [str(path)]


def test_caches_stay_within_their_budget() -> None:
    cache: ByteLRU[bytes] = ByteLRU(1000, len)
    for i in range(50):
        cache.put(i, bytes(100))
        assert cache.size <= 1000
    assert len(cache) == 10 and cache.get(49) is not None and cache.get(0) is None
    cache.put("big", bytes(5000))  # larger than the whole budget: not kept, nothing else lost
    assert "big" not in cache and len(cache) == 10


def test_frames_served_from_the_cache_are_the_rendered_pixels(dataset: Dataset) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    name = studio.frames(1)["frames"][0]["name"]
    first = studio.frame_image(1, name)
    job = studio._frameset(1)[1][name]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first)).convert("RGB")), job.render().image)
    studio.set_caption("0/0/mychar_01.png", "mychar, 1girl, another caption")
    assert studio.frame_image(1, name) == first
