"""Faults that happen while a run trains, through the REAL sd-scripts loader (docs/reliability.md).

Each case has a documented outcome under ``collage_on_error = "raise"`` (an error naming the file and
the fix) and ``"skip"`` (logged once, left out, every other image still shown exactly ``num_repeats``
times per epoch). No case may give a stretched or mis-cropped cell, a torn cache file, or a partial
file under a frame's final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import math
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import numpy as np
import toml
from PIL import Image

import fakes
from test_collage_dataset import dataset_toml, epoch_captions, id_counts, load

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from collage_ext.core.config import OPTIONS, NumberRule, resolve_config
from collage_ext.core.errors import CollageCacheError, CollageConfigError, CollageInputError
from collage_ext.plan import frames as frames_module

pytestmark = pytest.mark.sdscripts
SKIP = 'collage_rate = 1.0\ncollage_on_error = "skip"'
RAISE = "collage_rate = 1.0"
# (W, H): portraits and landscapes that fit 256 px frames within the upscale limit and keep the scale rule
# there (squares cannot: with 256 px buckets every frame is square, so they would train alone).
SIZES = [(128, 192)] * 4 + [(192, 128)] * 4 + [(144, 192)] * 2


def write_images(folder: Path, sizes: list[tuple[int, int]] = SIZES) -> Path:
    """``img_NNN.png`` captioned ``sks, idNNN``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        fakes.make_image(w, h, seed=i).save(folder / f"img_{i:03d}.png")
        (folder / f"img_{i:03d}.txt").write_text(f"sks, id{i:03d}\n", encoding="utf-8")
    return folder


def expect_exact_without(group: Any, gone: str, repeats: int, count: int = len(SIZES)) -> None:
    """Three epochs: the same number of samples, every other image exactly ``repeats`` times, ``gone`` never."""
    lengths = set()
    for epoch in (1, 2, 3):
        captions = epoch_captions(group, epoch)
        lengths.add(len(captions))
        counts = id_counts(captions)
        assert counts.get(gone, 0) == 0
        assert {k: v for k, v in counts.items() if k != gone} == {
            f"id{i:03d}": repeats for i in range(count) if f"id{i:03d}" != gone
        }
    assert len(lengths) == 1


def skipped_once(caplog: pytest.LogCaptureFixture, name: str) -> bool:
    return len([r for r in caplog.records if "skipping" in r.getMessage() and name in r.getMessage()]) == 1


# -- 1. numbers that are not numbers -----------------------------------------------------------
NUMERIC = [o for o in OPTIONS if isinstance(o.convert, NumberRule)]


@pytest.mark.parametrize("option", [o.name for o in NUMERIC])
@pytest.mark.parametrize("literal", ["nan", "inf", "-inf", '"1"'])
def test_non_numbers_refused_by_the_loader(
    tmp_path: Path, toks: fakes.TinyTokenizers, option: str, literal: str
) -> None:
    """The real loader refuses what ``collage-ext check`` refuses (tests/test_config_values.py), same message."""
    folder = write_images(tmp_path / "img", SIZES[:2])
    config = dataset_toml(tmp_path, folder, subset=f"{option} = {literal}")
    value = toml.load(config)["datasets"][0]["subsets"][0][option]
    where = "data['datasets'][0]['subsets'][0]"
    with pytest.raises(CollageConfigError) as expected:
        resolve_config([({option: value}, where)])
    with pytest.raises(CollageConfigError) as raised:
        load(tmp_path, toks, config)
    assert str(raised.value) == str(expected.value)
    assert (math.isnan(value) or math.isinf(value)) if isinstance(value, float) else isinstance(value, str)


# -- 2. a source replaced, deleted or re-cropped mid-run ---------------------------------------------
def replace_other_orientation(path: Path) -> None:
    Image.open(path).transpose(Image.Transpose.ROTATE_90).save(path)


def replace_smaller(path: Path) -> None:
    image = Image.open(path)
    image.resize((image.width // 2, image.height // 2)).save(path)


def replace_exif_rotated(path: Path) -> None:
    """The same stored pixels, now tagged 'rotate 90': viewers (and collage_ext) see a landscape."""
    exif = Image.Exif()
    exif[0x0112] = 6
    image = Image.open(path).convert("RGB")
    image.save(path.with_suffix(".png"), exif=exif)


REPLACEMENTS = {
    "other-orientation": replace_other_orientation,
    "half-size": replace_smaller,
    "exif-rotated": replace_exif_rotated,
}


@pytest.mark.parametrize("how", list(REPLACEMENTS))
def test_replaced_source_raise(tmp_path: Path, toks: fakes.TinyTokenizers, how: str) -> None:
    """A source replaced by another size mid-run stops the run naming the file, never a stretched cell."""
    folder = write_images(tmp_path / "img")
    group, _, _ = load(tmp_path, toks, dataset_toml(tmp_path, folder, general=RAISE))
    epoch_captions(group, 1)
    REPLACEMENTS[how](folder / "img_000.png")
    with pytest.raises(
        CollageInputError,
        match=r"img_000\.png changed while training: it is \d+x\d+ now, its "
        r"frames were planned for 128x192; restart training",
    ):
        epoch_captions(group, 2)


@pytest.mark.parametrize("how", list(REPLACEMENTS))
def test_replaced_source_skip(
    tmp_path: Path, toks: fakes.TinyTokenizers, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Under skip the replaced file leaves the run; the rest keeps exact coverage."""
    folder = write_images(tmp_path / "img")
    group, _, _ = load(tmp_path, toks, dataset_toml(tmp_path, folder, general=SKIP))
    REPLACEMENTS[how](folder / "img_000.png")
    expect_exact_without(group, "id000", 2)
    assert skipped_once(caplog, "img_000.png")


def test_same_size_replacement_trains_the_new_pixels(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """A file replaced by one of the same size is no fault: the next frames show the new pixels."""
    folder = write_images(tmp_path / "img")
    group, _, _ = load(tmp_path, toks, dataset_toml(tmp_path, folder, general=RAISE))
    Image.new("RGB", (128, 192), (255, 0, 255)).save(folder / "img_000.png")
    group.set_current_epoch(1)
    examples = [group[i] for i in range(len(group))]
    assert id_counts([e["captions"][0] for e in examples]) == {f"id{i:03d}": 2 for i in range(len(SIZES))}
    for example in examples:
        pixels = example["images"][0].numpy()  # C x H x W in [-1, 1]
        magenta = (pixels[0] > 0.99) & (pixels[1] < -0.99) & (pixels[2] > 0.99)
        assert magenta.any() == ("id000" in example["captions"][0])


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_deleted_source(
    tmp_path: Path, toks: fakes.TinyTokenizers, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A source deleted mid-run: raise names it; skip leaves it out with exact coverage of the rest."""
    folder = write_images(tmp_path / "img")
    group, _, _ = load(tmp_path, toks, dataset_toml(tmp_path, folder, general=SKIP if policy == "skip" else RAISE))
    (folder / "img_003.png").unlink()
    if policy == "raise":
        with pytest.raises(CollageInputError, match=r"img_003\.png does not exist; check the path or remove it"):
            epoch_captions(group, 1)
        return
    expect_exact_without(group, "id003", 2)
    assert skipped_once(caplog, "img_003.png")


@pytest.fixture()
def resize_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Every (loaded W x H, resized_size) pair sd-scripts' trim_and_resize_if_required sees."""
    train_util = fakes.import_sd("library.train_util")
    seen: list[tuple[tuple[int, int], tuple[int, int]]] = []
    original = train_util.trim_and_resize_if_required

    def spy(random_crop: bool, image: np.ndarray, reso: Any, resized_size: Any, *rest: Any, **named: Any) -> Any:
        seen.append(((image.shape[1], image.shape[0]), tuple(resized_size)))
        return original(random_crop, image, reso, resized_size, *rest, **named)

    monkeypatch.setattr(train_util, "trim_and_resize_if_required", spy)
    return seen


def single_only_config(tmp_path: Path, folder: Path, policy: str) -> Path:
    # rate 0.01 of 10 samples rounds to no collage frame: every image is a single sd-scripts loads itself
    return dataset_toml(tmp_path, folder, repeats=1, general=f'collage_rate = 0.01\ncollage_on_error = "{policy}"')


@pytest.mark.parametrize("fault", ["deleted", "other-orientation"])
def test_single_image_fault_raise(tmp_path: Path, toks: fakes.TinyTokenizers, fault: str) -> None:
    """An image sd-scripts loads itself (a single sample) names the file too, instead of a Pillow traceback
    or an image stretched to the bucket of its old shape."""
    folder = write_images(tmp_path / "img")
    group, _, _ = load(tmp_path, toks, single_only_config(tmp_path, folder, "raise"))
    singles = [i.absolute_path for i in group.image_data.values() if "img_0" in Path(i.absolute_path).name]
    assert str(folder / "img_000.png") in singles
    if fault == "deleted":
        (folder / "img_000.png").unlink()
        pattern = r"img_000\.png cannot be loaded .*put it back, or set collage_on_error"
    else:
        replace_other_orientation(folder / "img_000.png")
        pattern = r"img_000\.png changed while training: it is 192x128 now, sd-scripts bucketed it as 128x192"
    with pytest.raises(CollageInputError, match=pattern):
        epoch_captions(group, 1)


def test_single_image_replacement_keeps_the_aspect(
    tmp_path: Path, toks: fakes.TinyTokenizers, resize_spy: list[Any]
) -> None:
    """Under skip a failed single is replaced by another image cropped to its aspect, never stretched."""
    folder = write_images(tmp_path / "img")
    group, _, _ = load(tmp_path, toks, single_only_config(tmp_path, folder, "skip"))
    replace_other_orientation(folder / "img_000.png")
    captions = epoch_captions(group, 1)
    assert len(captions) == len(SIZES) and "sks, id000" not in captions
    assert resize_spy
    for (width, height), (target_w, target_h) in resize_spy:
        assert abs(width / height - target_w / target_h) < 0.02, "a stretched image reached sd-scripts' resize"


@pytest.mark.parametrize(
    ("before", "after", "fault"),
    [
        ("0, 0, 100, 150", "10, 10, 110, 160", True),
        ("0, 0, 100, 150", "# tightened\n0 0 100 150", False),  # same box: no change
        (None, "0, 0, 64, 96", True),  # sidecar added
        ("0, 0, 100, 150", None, True),  # sidecar removed
    ],
)
@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_crop_sidecar_edited(
    tmp_path: Path,
    toks: fakes.TinyTokenizers,
    before: str | None,
    after: str | None,
    fault: bool,
    policy: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A .crop edited mid-run is never silently ignored nor applied to cells planned for the old box."""
    folder = write_images(tmp_path / "img")
    sidecar = folder / "img_000.crop"
    if before is not None:
        sidecar.write_text(before, encoding="utf-8")
    # collage_min_span = 0: the 100x150 box joins frames (with the rule it cannot reach a 256 px frame's height)
    general = (SKIP if policy == "skip" else RAISE) + "\ncollage_min_span = 0"
    group, _, _ = load(tmp_path, toks, dataset_toml(tmp_path, folder, general=general))
    if after is None:
        sidecar.unlink()
    else:
        sidecar.write_text(after, encoding="utf-8")
    if not fault:
        assert id_counts(epoch_captions(group, 1)) == {f"id{i:03d}": 2 for i in range(len(SIZES))}
        return
    if policy == "raise":
        with pytest.raises(
            CollageInputError,
            match=r"crop file .*img_000\.crop changed while training: the frames "
            r"were planned with .*restart training to use the new box",
        ):
            epoch_captions(group, 1)
        return
    expect_exact_without(group, "id000", 2)
    assert skipped_once(caplog, "img_000.png")


# -- 3. the static cache folder ---------------------------------------------------------------------
STATIC = ["--cache_latents"]


def static_files(folder: Path) -> dict[str, str]:
    """name -> sha256 of every file in the cache folder."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _build_in_child(tmp: Path, toks: fakes.TinyTokenizers, config: Path, barrier: Any, queue: Any) -> None:
    try:
        barrier.wait(timeout=120)
        with fakes.fresh_strategies():
            group, _, _ = load(tmp, toks, config, *STATIC)
        queue.put(sorted(i.absolute_path for i in group.image_data.values()))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_build_one_static_cache(
    tmp_path: Path, toks: fakes.TinyTokenizers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs render the same cache folder at once: no torn or mixed files, both train the same frames."""
    folder = write_images(tmp_path / "img")
    cache = tmp_path / "shared_cache"
    config = dataset_toml(tmp_path, folder, general=f'{RAISE}\ncollage_variants = 3\ncollage_cache_dir = "{cache}"')
    load(tmp_path / "solo", toks, config, *STATIC)
    reference = static_files(cache)  # what one run alone renders
    for path in cache.iterdir():
        path.unlink()
    original = frames_module.write_png_atomic
    context = multiprocessing.get_context("fork")
    writes = context.Value("i", 0)

    def slow_write(image: Image.Image, path: Path, *rest: Any) -> None:  # widen the window in which both runs write
        time.sleep(0.02)
        original(image, path, *rest)
        with writes.get_lock():
            writes.value += 1

    monkeypatch.setattr(frames_module, "write_png_atomic", slow_write)
    barrier, queue = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=_build_in_child, args=(tmp_path / f"run{n}", toks, config, barrier, queue))
        for n in range(2)
    ]
    for child in children:
        child.start()
    results = [queue.get(timeout=300) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert all(isinstance(r, list) for r in results), results
    assert results[0] == results[1]
    names = static_files(cache)
    assert not [n for n in names if not n.endswith(".png")], "temporary files left behind"
    for name in names:
        with Image.open(cache / name) as image:
            image.load()  # every file is a complete PNG
    assert names == reference  # the same frames, byte for byte, as one run alone
    assert writes.value > len(names)  # the runs really overlapped: some frames were written by both


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_source_deleted_between_planning_and_rendering(
    tmp_path: Path,
    toks: fakes.TinyTokenizers,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Static mode: a file that vanishes after its header was read follows the policy while frames render."""
    from collage_ext.sdscripts import mapper

    folder = write_images(tmp_path / "img")
    original = mapper.CollageMixin._register_static

    def delete_first(self: Any, *args: Any, **kwargs: Any) -> int:
        (folder / "img_003.png").unlink()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mapper.CollageMixin, "_register_static", delete_first)
    config = dataset_toml(tmp_path, folder, general=SKIP if policy == "skip" else RAISE)
    if policy == "raise":
        with pytest.raises(CollageInputError, match=r"img_003\.png cannot be read any more .*put it back or restart"):
            load(tmp_path, toks, config, *STATIC)
        return
    group, _, _ = load(tmp_path, toks, config, *STATIC)
    expect_exact_without(group, "id003", 2)
    assert skipped_once(caplog, "img_003.png")


def test_static_frame_deleted_from_the_cache_is_rendered_again(
    tmp_path: Path, toks: fakes.TinyTokenizers, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone cleans the cache folder mid-run: the frame comes back byte for byte, coverage unchanged."""
    folder = write_images(tmp_path / "img")
    group, _, _ = load(tmp_path, toks, dataset_toml(tmp_path, folder, general=RAISE), *STATIC)
    frames = sorted(Path(i.absolute_path) for i in group.image_data.values() if "collage_" in i.absolute_path)
    before = {p: p.read_bytes() for p in frames}
    for path in frames:
        path.unlink()
    assert id_counts(epoch_captions(group, 1)) == {f"id{i:03d}": 2 for i in range(len(SIZES))}
    assert {p: p.read_bytes() for p in frames} == before
    assert any("rendered it again" in r.getMessage() for r in caplog.records)


def test_non_finite_in_the_training_config_file(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """collage_* defaults in the training --config_file are checked the same way, naming that file."""
    folder = write_images(tmp_path / "img", SIZES[:2])
    with pytest.raises(
        CollageConfigError,
        match=r"collage_pad_weight must be .*\(a finite number, not nan or inf\), "
        r"got nan; e\.g\. collage_pad_weight = 0\.1 @ ",
    ):
        load(tmp_path, toks, dataset_toml(tmp_path, folder), collage_pad_weight=math.nan)


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """A folder nobody can write: chmod for ordinary users, a read-only tmpfs for root (root ignores modes)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_read_only_cache_folder_fails_at_start(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """A read-only collage_cache_dir stops the dataset build (before sd-scripts loads a model), naming it."""
    folder = write_images(tmp_path / "img")
    with read_only_folder(tmp_path / "ro") as cache:
        config = dataset_toml(tmp_path, folder, general=f'{RAISE}\ncollage_cache_dir = "{cache}"')
        with pytest.raises(
            CollageCacheError,
            match=rf"collage cache folder {cache} cannot be written: .*make the "
            r"folder writable, or set collage_cache_dir",
        ):
            load(tmp_path, toks, config, *STATIC)


class _Quota:
    """A write hook: files opened through ``os.fdopen`` fail with ENOSPC once ``left`` bytes are used."""

    def __init__(self, left: int) -> None:
        self.left = left
        self.real = os.fdopen

    def __call__(self, fd: int, *args: Any, **kwargs: Any) -> Any:
        quota = self

        class Limited(io.FileIO):
            def write(self, data: Any) -> int:
                if len(data) > quota.left:
                    written = super().write(bytes(data)[: quota.left])
                    quota.left = 0
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"({written} bytes written)")
                quota.left -= len(data)
                return super().write(data)

        return io.BufferedWriter(Limited(fd, "wb"))


def _assert_no_partial_entries(cache: Path) -> None:
    for path in cache.iterdir():
        assert path.suffix == ".png", f"{path.name} left behind"
        with Image.open(path) as image:
            image.load()


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_disk_full_while_rendering(
    tmp_path: Path, toks: fakes.TinyTokenizers, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    """ENOSPC mid-frame: a clear error under either policy, complete frames only; a later run finishes the job."""
    folder = write_images(tmp_path / "img")
    cache = tmp_path / "cache"
    config = dataset_toml(
        tmp_path, folder, general=f'collage_rate = 1.0\ncollage_on_error = "{policy}"\ncollage_cache_dir = "{cache}"'
    )
    monkeypatch.setattr(frames_module.os, "fdopen", _Quota(40_000))
    with pytest.raises(
        CollageCacheError,
        match=rf"collage cache folder {cache} cannot write collage_\w+\.png: No "
        r"space left on device; .*free space on that disk",
    ):
        load(tmp_path, toks, config, *STATIC)
    monkeypatch.undo()
    written = {p.name for p in cache.iterdir()}
    assert written  # some frames were complete before the disk filled
    _assert_no_partial_entries(cache)
    with fakes.fresh_strategies():
        group, _, _ = load(tmp_path / "again", toks, config, *STATIC)
    frames = {Path(i.absolute_path).name for i in group.image_data.values()}
    assert written <= frames  # the complete ones are reused, the rest rendered
    _assert_no_partial_entries(cache)


def test_disk_full_on_a_real_tmpfs(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """The same with a real 64 KB tmpfs as the cache folder (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; test_disk_full_while_rendering covers this with a write hook")
    folder = write_images(tmp_path / "img")
    cache = tmp_path / "small"
    cache.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(cache)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        config = dataset_toml(tmp_path, folder, general=f'{RAISE}\ncollage_variants = 8\ncollage_cache_dir = "{cache}"')
        with pytest.raises(CollageCacheError, match="No space left on device"):
            load(tmp_path, toks, config, *STATIC)
        _assert_no_partial_entries(cache)
    finally:
        subprocess.run(["umount", str(cache)], check=False)
