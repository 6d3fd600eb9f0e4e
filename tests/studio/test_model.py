"""The studio's model without a browser: it agrees with preview, its statistics with the pixels, its writes are safe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from collage_ext.captions import CaptionGrammar, clip_budget, estimate_tokens, t5_budget
from collage_ext.cli import main
from collage_ext.kohya.datasets import glob_images
from collage_ext.plan.framesets import text_encoder_for
from collage_ext.plan.framestats import frame_stats
from collage_ext.plan.jobs import frames_for
from collage_ext.plan.project import load_project, plan_project
from collage_ext.studio import files as studio_files
from collage_ext.studio.files import Folders, History, RefusedError
from collage_ext.studio.model import Studio
from collage_ext.studio.tokens import caption_view, token_view

from .conftest import Dataset


def test_frames_are_previews_frames(dataset: Dataset) -> None:
    """Same names, layouts, sources and captions as the CLI's plan (the functions preview uses)."""
    studio = Studio(dataset.toml, config=dataset.train)
    project = load_project(dataset.toml, config_file=dataset.train)
    encoder = text_encoder_for(project.run.values)
    for epoch in (1, 2, 3):
        cli = frames_for(plan_project(project, encoder), "dynamic", epoch)
        ours = studio.frames(epoch)["frames"]
        assert [(f["name"], f["layout"], f["caption"]) for f in ours] == [
            (j.name, j.params.layout.name, j.caption) for j in cli.jobs
        ]
        assert [[s["name"] for s in f["sources"]] for f in ours] == [
            [Path(s.path).name for s in j.sources] for j in cli.jobs
        ]


def test_fill_and_span_match_the_rendered_pixels(dataset: Dataset) -> None:
    """``frame_stats`` (geometry only) agrees with the padding mask of the rendered frame."""
    (dataset.images / "mychar_02.crop").write_text("100, 0, 700, 900\n", encoding="utf-8")
    studio = Studio(dataset.toml, config=dataset.train)
    _, jobs = studio._frameset(1)
    assert jobs
    for job in jobs.values():
        stats = frame_stats(job.params.layout, job.sources, job.planned.subset.config.fit_mode)
        mask = job.render(with_mask=True).mask
        assert mask is not None
        assert stats.fill == pytest.approx(1 - mask.mean(), abs=1e-9)
        assert all(0 < span <= 1 for span in stats.spans)
        h, w = mask.shape
        # the largest span equals the longest run of image pixels across the frame, for some source
        rows, cols = (~mask).any(axis=1).sum() / h, (~mask).any(axis=0).sum() / w
        assert max(stats.spans) <= max(rows, cols) + 1e-9


def test_token_view_marks_chunks_cut_and_repeats() -> None:
    def words(s: str) -> int:
        return len(s.replace(",", " ").split())

    text = ", ".join(f"w{i}" for i in range(100))
    view = token_view(text, clip_budget(None), words, CaptionGrammar())
    assert view["total"] == 100 and view["overflow"] == 25
    assert [t["cut"] for t in view["tags"]].index(True) == 75
    wide = token_view(text, clip_budget(150), words, CaptionGrammar())
    assert [t["chunk"] for t in wide["tags"]][74:76] == [0, 1] and wide["chunks"] == [75, 25]
    t5 = token_view(text, t5_budget(512), words, CaptionGrammar())
    assert t5["chunks"] == [100] and not any(t["cut"] for t in t5["tags"])
    repeated = caption_view("ohwx, " + text, clip_budget(225), words, CaptionGrammar(keep_tokens=1), ["ohwx"], 2)
    inserted = [t for t in repeated["tags"] if t["inserted"]]
    assert repeated["repeated"] and inserted and all(t["text"] == "ohwx" and t["chunk"] >= 1 for t in inserted)


def test_caption_counts_use_the_runs_encoder(dataset: Dataset) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    source = next(s for s in studio.sources()["sources"] if s["name"] == "mychar_01.png")
    assert source["tokens"]["max"] == 225  # max_token_length = 225 in the training TOML
    assert source["tokens"]["total"] == estimate_tokens(source["tokens"]["text"])


def test_drop_is_honoured_by_sd_scripts_listing_and_refuses_clashes(dataset: Dataset) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    (dataset.images / "mychar_03.crop").write_text("0, 0, 800, 1000\n", encoding="utf-8")
    studio.reload()
    studio.drop("0/0/mychar_03.png")
    dropped = dataset.images / "_collage_studio" / "dropped"
    assert sorted(p.name for p in dropped.iterdir()) == ["mychar_03.crop", "mychar_03.png", "mychar_03.txt"]
    assert all("mychar_03" not in p for p in glob_images(str(dataset.images)))
    assert "0/0/mychar_03.png" in studio.entries and studio.entries["0/0/mychar_03.png"].dropped
    with pytest.raises(RefusedError):
        studio.set_caption("0/0/mychar_03.png", "edit while dropped")
    # A new file with the same name appeared meanwhile: restoring must not overwrite it.
    (dataset.images / "mychar_03.png").write_bytes(b"another image")
    with pytest.raises(RefusedError, match="already exists"):
        studio.restore("0/0/mychar_03.png")
    assert (dropped / "mychar_03.png").is_file()
    (dataset.images / "mychar_03.png").unlink()
    studio.reload()
    studio.restore("0/0/mychar_03.png")
    assert (dataset.images / "mychar_03.crop").read_text(encoding="utf-8") == "0, 0, 800, 1000\n"


def test_crop_boxes_are_validated_and_undone(dataset: Dataset) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    for bad in ([0, 0, 900, 100], [10, 10, 5, 50], [0, 0, 10], ["0", 0, 10, 10], [0.5, 0, 10, 10]):
        with pytest.raises(RefusedError):
            studio.set_crop("0/0/mychar_05.png", bad)
    assert not (dataset.images / "mychar_05.crop").exists()
    studio.set_crop("0/0/mychar_05.png", [10, 20, 410, 580])
    assert (dataset.images / "mychar_05.crop").read_text(encoding="utf-8") == "10, 20, 410, 580\n"
    studio.set_crop("0/0/mychar_05.png", None)
    assert not (dataset.images / "mychar_05.crop").exists()
    assert studio.undo() == "crop box of mychar_05.png cleared"
    assert (dataset.images / "mychar_05.crop").read_text(encoding="utf-8") == "10, 20, 410, 580\n"
    assert studio.undo() == "crop box of mychar_05.png"
    assert not (dataset.images / "mychar_05.crop").exists()
    assert studio.undo() is None


def test_atomic_write_leaves_the_old_file_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "10_a"
    folder.mkdir()
    target = folder / "a.txt"
    target.write_bytes(b"old\n")
    history = History(Folders([folder]))

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(studio_files.os, "replace", broken)
    with pytest.raises(OSError):
        history.write(target, b"new\n", "caption")
    monkeypatch.undo()
    assert target.read_bytes() == b"old\n"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_seed_reroll_and_write_to_the_training_toml(dataset: Dataset) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    state = studio.set_seed(7)
    assert state["seed"] == 7 and dataset.train.read_text(encoding="utf-8").count("seed = 42") == 1  # not written
    assert studio.frames(1)["seed"] == 7  # re-planned with the new seed
    studio.set_seed(1234, write=True)
    text = dataset.train.read_text(encoding="utf-8")
    assert "seed = 1234\n" in text and text.startswith("# my training run\n[training]\n")
    assert load_project(dataset.toml, config_file=dataset.train).seed == 1234
    studio.undo()
    assert "seed = 42\n" in dataset.train.read_text(encoding="utf-8")
    no_config = Studio(dataset.toml)
    with pytest.raises(RefusedError, match="--config"):
        no_config.set_seed(5, write=True)


def test_metadata_subsets_are_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAGE_EXT_NO_TOKENIZER", "1")
    from PIL import Image

    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 96), (i * 100, 50, 50)).save(images / f"p{i}.png")
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({f"p{i}.png": {"caption": f"cap {i}"} for i in range(2)}), encoding="utf-8")
    toml = tmp_path / "ds.toml"
    toml.write_text(
        f'[[datasets]]\nresolution = 128\n[[datasets.subsets]]\nimage_dir = "{images.as_posix()}"\n'
        f'metadata_file = "{meta.as_posix()}"\n',
        encoding="utf-8",
    )
    studio = Studio(toml)
    with pytest.raises(RefusedError, match="metadata_file"):
        studio.set_caption("0/0/p0.png", "new")
    with pytest.raises(RefusedError, match="metadata_file"):
        studio.drop("0/0/p0.png")


def test_cli_says_how_to_install_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dataset: Dataset
) -> None:
    import collage_ext.studio as studio_pkg

    monkeypatch.setattr(studio_pkg, "missing_packages", lambda: ["uvicorn"])
    assert main(["studio", str(dataset.toml), "--no_browser"]) == 2
    assert 'pip install "collage-ext[studio]"' in capsys.readouterr().err


def test_mean_fill_reported(dataset: Dataset) -> None:
    frames = Studio(dataset.toml, config=dataset.train).frames(1)
    assert frames["mean_fill"] == pytest.approx(np.mean([f["fill"] for f in frames["frames"]]), abs=1e-3)


def test_static_mode_shows_every_static_frame(dataset: Dataset) -> None:
    """With cached latents the run is static: the studio lists the static cache's frames, whatever the epoch."""
    studio = Studio(dataset.toml, config=dataset.train, trainer_args=["--cache_latents"])
    assert studio.state()["static"]
    frames = studio.frames(1)
    assert frames["frames"] and all(f["name"].startswith("collage_") for f in frames["frames"])
    assert studio.frames(5)["frames"] == frames["frames"]
    project = load_project(dataset.toml, config_file=dataset.train, trainer_args=["--cache_latents"])
    cli = frames_for(plan_project(project, text_encoder_for(project.run.values)), "static", 1)
    assert [f["name"] for f in frames["frames"]] == [j.name for j in cli.jobs]
    png = studio.frame_image(3, frames["frames"][0]["name"])
    assert png.startswith(b"\x89PNG")


def test_token_view_positions_are_the_prefix_counts() -> None:
    """The linear token view gives every listed tag exactly ``counter(text[:start])`` / ``counter(text[:end])``."""
    import random

    from collage_ext.studio.tokens import LISTED_CUT_TAGS, tag_spans

    rng = random.Random(20)
    words = [
        "mychar",
        "1girl",
        "red dress",
        "looking_at_viewer",
        "it's",
        "(smile:1.2)",
        "{a|b, c}",
        "café",
        "x" * 40,
        "...",
        "2024",
        "  ",
        "\n",
        "{{lit}}",
        ":)",
        "a.b",
        "blue   sky",
    ]
    for budget in (clip_budget(None), clip_budget(225), t5_budget(512)):
        for _ in range(25):
            n = rng.randrange(1, 300)
            seps = [rng.choice([", ", ",", " , ", ",  \n", ",\t"]) for _ in range(n)]
            text = "".join(rng.choice(words) + sep for sep in seps)
            for counter in (estimate_tokens, lambda s: len(s.replace(",", " ").split())):
                view = token_view(text, budget, counter, CaptionGrammar())
                spans = tag_spans(text, ",")
                assert len(view["tags"]) + view["more_tags"] >= len(spans) or not view["more_tags"]
                for tag, (lo, hi) in zip(view["tags"], spans):
                    assert tag["text"] == text[lo:hi]
                    assert (tag["start"], tag["end"]) == (counter(text[:lo]), counter(text[:hi])), (text, lo, hi)
                assert sum(t["cut"] for t in view["tags"]) <= LISTED_CUT_TAGS
                if view["total_exact"]:
                    assert view["total"] == counter(text)
                else:
                    assert counter(text) >= view["total"] > 128 * budget.max_tokens


def test_token_view_is_linear_for_huge_captions(dataset: Dataset) -> None:
    """2 500 tags took 18 s and a 10 MB caption over 6 minutes (quadratic prefix counting, holding the lock)."""
    import time

    studio = Studio(dataset.toml, config=dataset.train)
    tags = ", ".join(f"detail tag {i}" for i in range(2500))
    start = time.perf_counter()
    view = studio.preview_tokens("0/0/mychar_01.png", "mychar, " + tags)
    assert time.perf_counter() - start < 1.0
    assert view["overflow"] > 0 and view["more_tags"] > 2000 and view["total_exact"]
    assert sum(t["cut"] for t in view["tags"]) == 50
    huge = "mychar, " + ", ".join(f"word{i} and more" for i in range(700_000))
    assert len(huge) > 10_000_000
    (dataset.images / "mychar_02.txt").write_text(huge, encoding="utf-8")
    studio.reload()
    start = time.perf_counter()
    listed = next(s for s in studio.sources()["sources"] if s["name"] == "mychar_02.png")
    frames = [studio.frames(epoch) for epoch in (1, 2)]
    took = time.perf_counter() - start
    assert took < 5.0, f"sources and frames took {took:.1f} s with a 10 MB caption"
    assert "MiB" in listed["problem"] and listed["caption_text"] is None  # named, and left out of the frames
    assert all("mychar_02.png" not in [s["name"] for f in fs["frames"] for s in f["sources"]] for fs in frames)
    start = time.perf_counter()
    view = studio.preview_tokens("0/0/mychar_02.png", huge)
    assert time.perf_counter() - start < 2.0
    assert not view["total_exact"] and view["total"] > view["max"] and view["more_tags"] > 600_000
    assert len(view["tags"]) < 400


# -- integrity (issue 20 item 14) ----------------------------------------------------------------------------------


def test_a_stale_caption_write_is_a_409_and_writes_nothing(dataset: Dataset) -> None:
    """Two tabs: the second saves over text it never saw. It gets a clear 409; the first tab's caption stays."""
    studio = Studio(dataset.toml, config=dataset.train)
    seen = next(s for s in studio.sources()["sources"] if s["name"] == "mychar_01.png")["caption_version"]
    studio.set_caption("0/0/mychar_01.png", "mychar, written by tab one", seen)
    caption = dataset.images / "mychar_01.txt"
    assert caption.read_text(encoding="utf-8") == "mychar, written by tab one\n"
    with pytest.raises(RefusedError, match="changed since this page read it") as refused:
        studio.set_caption("0/0/mychar_01.png", "mychar, written by tab two", seen)
    assert refused.value.status == 409
    assert caption.read_text(encoding="utf-8") == "mychar, written by tab one\n"
    # Another program counts as well, and so does a crop box.
    fresh = next(s for s in studio.sources()["sources"] if s["name"] == "mychar_01.png")
    caption.write_text("mychar, edited in a text editor\n", encoding="utf-8")
    with pytest.raises(RefusedError, match="changed since"):
        studio.set_caption("0/0/mychar_01.png", "mychar, tab", fresh["caption_version"])
    (dataset.images / "mychar_01.crop").write_text("0, 0, 400, 560\n", encoding="utf-8")
    with pytest.raises(RefusedError, match="crop box of mychar_01.png changed"):
        studio.set_crop("0/0/mychar_01.png", [10, 10, 300, 400], fresh["crop_version"])
    assert (dataset.images / "mychar_01.crop").read_text(encoding="utf-8") == "0, 0, 400, 560\n"


def test_drop_leaves_a_same_stem_siblings_caption(dataset: Dataset) -> None:
    """img_004.jpg and img_004.png share img_004.txt (sd-scripts reads <stem><caption_extension>)."""
    from PIL import Image

    Image.open(dataset.images / "mychar_04.png").convert("RGB").save(dataset.images / "mychar_04.jpg")
    (dataset.images / "mychar_04.crop").write_text("0, 0, 700, 1000\n", encoding="utf-8")
    caption, crop = dataset.images / "mychar_04.txt", dataset.images / "mychar_04.crop"
    text, box = caption.read_bytes(), crop.read_bytes()
    studio = Studio(dataset.toml, config=dataset.train)
    studio.drop("0/0/mychar_04.png")
    assert caption.read_bytes() == text and crop.read_bytes() == box  # the .jpg keeps its caption and crop
    dropped = dataset.images / "_collage_studio" / "dropped"
    assert sorted(p.name for p in dropped.iterdir()) == ["mychar_04.crop", "mychar_04.png", "mychar_04.txt"]
    jpg = next(s for s in studio.sources()["sources"] if s["name"] == "mychar_04.jpg")
    assert jpg["caption_text"] == text.decode() and jpg["crop"] == [0, 0, 700, 1000]
    caption.write_text("mychar, edited while the png was dropped\n", encoding="utf-8")
    studio.reload()
    studio.restore("0/0/mychar_04.png")
    assert (dataset.images / "mychar_04.png").is_file() and not any(dropped.iterdir())
    assert caption.read_text(encoding="utf-8") == "mychar, edited while the png was dropped\n"
    kept = list((dataset.images / "_collage_studio" / "history").iterdir())
    assert sorted(p.read_bytes() for p in kept) == sorted([box, text])  # the dropped copies, kept, not lost


def test_a_dropped_image_stays_listed_when_a_new_file_takes_its_name(dataset: Dataset) -> None:
    studio = Studio(dataset.toml, config=dataset.train)
    studio.drop("0/0/mychar_03.png")
    (dataset.images / "mychar_04.png").rename(dataset.images / "mychar_03.png")  # the user renames another image
    studio.reload()
    names = [(s["name"], s["dropped"]) for s in studio.sources()["sources"]]
    assert ("mychar_03.png", True) in names and ("mychar_03.png", False) in names
    dropped = next(s for s in studio.sources()["sources"] if s["name"] == "mychar_03.png" and s["dropped"])
    with pytest.raises(RefusedError, match="already exists") as refused:
        studio.restore(dropped["id"])
    assert refused.value.status == 409


@pytest.mark.parametrize("seed", [2**32, 2**70, -1, True, 1.5, "7"])
def test_seed_outside_what_sd_scripts_accepts_is_refused(dataset: Dataset, seed: object) -> None:
    """sd-scripts seeds numpy with it: 0..2**32-1. 2**70 was written into the TOML and failed the run."""
    studio = Studio(dataset.toml, config=dataset.train)
    before = dataset.train.read_bytes()
    with pytest.raises(RefusedError, match="0 to 4294967295") as refused:
        studio.set_seed(seed, write=True)  # type: ignore[arg-type]
    assert refused.value.status == 400 and dataset.train.read_bytes() == before


def test_the_largest_seed_is_accepted(dataset: Dataset) -> None:
    import numpy as np

    studio = Studio(dataset.toml, config=dataset.train)
    studio.set_seed(2**32 - 1, write=True)
    assert "seed = 4294967295\n" in dataset.train.read_text(encoding="utf-8")
    np.random.RandomState(load_project(dataset.toml, config_file=dataset.train).seed)  # numpy's seed rule
    with pytest.raises(ValueError):
        np.random.RandomState(2**32)
    studio.set_seed(0)


def test_history_is_bounded(dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """291 copies after six bursts of edits, 10 MB captions included: the oldest go, per file and in all."""
    monkeypatch.setattr(studio_files, "KEEP_PER_FILE", 4)
    monkeypatch.setattr(studio_files, "KEEP_BYTES", 3000)
    monkeypatch.setattr(studio_files, "UNDO_STEPS", 5)
    studio = Studio(dataset.toml, config=dataset.train)
    history = dataset.images / "_collage_studio" / "history"
    for i in range(12):
        studio.set_caption("0/0/mychar_01.png", f"mychar, edit {i}")
    kept = sorted(history.iterdir())
    assert len(kept) == 4
    assert {p.read_text(encoding="utf-8") for p in kept} == {f"mychar, edit {i}\n" for i in range(7, 11)}
    for i in range(3):
        studio.set_caption("0/0/mychar_02.png", "mychar, " + f"long caption {i} " * 80)  # ~1.3 KB each
    sizes = [p.stat().st_size for p in history.iterdir()]
    assert sum(sizes) <= 3000 + max(sizes)  # the newest copy always stays, even when alone over the limit
    assert any("long caption 1" in p.read_text(encoding="utf-8") for p in history.iterdir())
    assert len(studio.history.changes) == 5
    assert studio.undo() is not None  # the remembered steps still undo
