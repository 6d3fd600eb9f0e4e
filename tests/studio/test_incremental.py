"""An edit re-does only what it touches: the frames that hold the image, that image's measures (issue 21)."""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import pytest
from PIL import Image

from collage_ext.commands import check
from collage_ext.plan import jobs
from collage_ext.plan.framesets import text_encoder_for
from collage_ext.plan.jobs import FrameJob, frames_for
from collage_ext.plan.project import load_project, plan_project
from collage_ext.studio.cache import ByteLRU
from collage_ext.studio.model import Studio

from .conftest import Dataset, draw_person


@pytest.fixture
def counted(dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Every frame of this test's dataset rendered and every image decoded for check, by path (check on one
    process, to count). Only this dataset's: an earlier test's studio may still pre-render in the background."""
    monkeypatch.setenv("COLLAGE_EXT_JOBS", "1")
    seen: dict[str, list[Any]] = {"render": [], "measure": []}
    render, measure = FrameJob.render, check._measure_file
    mine = str(dataset.images)

    def counting_render(self: FrameJob, **kwargs: Any) -> Any:
        paths = [s.path for s in self.sources]
        if any(path.startswith(mine) for path in paths):
            seen["render"].append(paths)
        return render(self, **kwargs)

    def counting_measure(item: Any) -> Any:
        if str(item[0]).startswith(mine):
            seen["measure"].append(item[0])
        return measure(item)

    monkeypatch.setattr(jobs.FrameJob, "render", counting_render)
    monkeypatch.setattr(check, "_measure_file", counting_measure)
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


def test_a_caption_edit_renders_nothing_and_answers_before_the_plan_is_read(
    dataset: Dataset, counted: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    show_all(studio)
    studio.check(1)
    counted["render"].clear(), counted["measure"].clear()
    rereads: list[int] = []
    refreshed: list[list[str]] = []
    reread, refresh = studio._reread, studio._refresh
    monkeypatch.setattr(studio, "_reread", lambda: rereads.append(1) or reread())
    monkeypatch.setattr(studio, "_refresh", lambda ids: refreshed.append(ids) or refresh(ids))
    studio._background.shutdown(wait=True)  # no pre-render: what the write itself does is measured

    class Inline:
        def submit(self, *args: Any) -> None:
            pass

    studio._background = Inline()  # type: ignore[assignment]
    answer = studio.set_caption("0/0/mychar_01.png", "mychar, 1girl, green dress, a brand new tag")
    assert rereads == refreshed == [] and answer["tokens"]["total"] > 0  # read again on the next read, not now
    frames = studio.frames(1)["frames"]
    assert refreshed == [["0/0/mychar_01.png"]] and rereads == []  # that image's files, not the whole dataset
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


def shown(studio: Studio, epoch: int) -> tuple[Any, ...]:
    """Everything the page is shown of an epoch (without version numbers) and every frame's sources and params."""
    sources = studio.sources(epoch)["sources"]
    frames = {k: v for k, v in studio.frames(epoch).items() if k != "version"}
    jobs = [(j.name, j.slot, j.variant, j.params, j.sources) for j in studio._frameset(epoch)[0].jobs]
    return sources, frames, jobs, studio.broken, studio.error


@pytest.mark.parametrize("seed, static", [(1, False), (2, False), (3, False), (4, True)])
def test_after_random_edits_the_studio_shows_what_a_full_read_shows(
    dataset: Dataset, seed: int, static: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Captions, crop boxes (shapes that regroup the pool, and ones that do not), clears and undos, read after
    one or several edits: the per-image refresh gives exactly the sources, frames and params of a new studio."""
    gen = random.Random(seed)
    for i in range(7, 13):  # landscapes and squares beside the portraits: crops move images between classes
        size = gen.choice([(1120, 800), (900, 900), (1200, 675)])
        draw_person(size, (gen.randrange(256), 90, 60), (200, 210, 220)).save(dataset.images / f"mychar_{i:02d}.png")
        (dataset.images / f"mychar_{i:02d}.txt").write_text(f"mychar, 1girl, look {i}, outdoors\n", encoding="utf-8")
    args = ["--cache_latents"] if static else []
    studio = Studio(dataset.toml, config=dataset.train, trainer_args=args)
    studio._background.shutdown(wait=True)  # no pre-render racing the edits

    class Inline:
        def submit(self, *args: Any) -> None:
            pass

    studio._background = Inline()  # type: ignore[assignment]
    full_reads: list[int] = []
    reread = studio._reread
    monkeypatch.setattr(studio, "_reread", lambda: full_reads.append(1) or reread())
    sizes = {s["id"]: s["size"] for s in studio.sources(1)["sources"]}
    regrouped = 0
    for step in range(10):
        for _ in range(gen.choice([1, 1, 2, 3])):  # sometimes several edits before the page reads again
            eid = gen.choice(sorted(sizes))
            w, h = sizes[eid]
            kind = gen.choice(["caption", "crop", "crop", "clear", "undo"])
            if kind == "caption":
                studio.set_caption(eid, f"mychar, {gen.choice(['red', 'tall', 'a new tag'])}, step {step}\nsecond line")
            elif kind == "crop":
                cw, ch = gen.randrange(w // 3, w), gen.randrange(h // 3, h)
                left, top = gen.randrange(0, w - cw + 1), gen.randrange(0, h - ch + 1)
                studio.set_crop(eid, [left, top, left + cw, top + ch])
            elif kind == "clear":
                studio.set_crop(eid, None)
            else:
                studio.undo()
        epoch = gen.choice([1, 2])
        before = [j.params for j in studio._frameset(epoch)[0].jobs] if studio._frames else None
        incremental = shown(studio, epoch)
        regrouped += before is not None and [j.params.keys for j in studio._frameset(epoch)[0].jobs] != [
            p.keys for p in before
        ]
        fresh = Studio(dataset.toml, config=dataset.train, trainer_args=args)
        assert incremental == shown(fresh, epoch), f"step {step}"
        project = load_project(dataset.toml, config_file=dataset.train, trainer_args=args, strict=False)
        cli = frames_for(plan_project(project, text_encoder_for(project.run.values)), studio.mode, epoch)  # no memo
        assert [(j.name, j.params, j.caption) for j in cli.jobs] == [
            (j.name, j.params, j.caption) for j in studio._frameset(epoch)[0].jobs
        ], f"step {step}"
    assert regrouped >= 1  # some crops changed the grouping of the epoch (not only the edited image's frames)
    assert full_reads == []  # every edit above was refreshed per image, none by reading the whole dataset


def test_an_edit_of_a_caption_two_images_read_reads_everything_again(
    dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mychar_02.jpg`` and ``mychar_02.png`` both read ``mychar_02.txt``: editing it refreshes both images."""
    Image.open(dataset.images / "mychar_02.png").convert("RGB").save(dataset.images / "mychar_02.jpg")
    studio = Studio(dataset.toml, config=dataset.train)
    full_reads: list[int] = []
    reread = studio._reread
    monkeypatch.setattr(studio, "_reread", lambda: full_reads.append(1) or reread())
    studio.set_caption("0/0/mychar_02.png", "mychar, 1girl, one caption for two files")
    sources = {s["id"]: s for s in studio.sources(1)["sources"]}
    assert full_reads == [1]
    assert (
        sources["0/0/mychar_02.jpg"]["caption"]
        == sources["0/0/mychar_02.png"]["caption"]
        == ("mychar, 1girl, one caption for two files")
    )
    assert shown(studio, 1) == shown(Studio(dataset.toml, config=dataset.train), 1)
