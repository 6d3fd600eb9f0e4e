"""Issue 18 through the REAL sd-scripts loader: the configurations users run keep the rule, and
``collage-ext check`` counts exactly the samples the trainer gets, in dynamic and in static mode.

* ``enable_bucket = false`` (sd-scripts' default): fixed frames, every collaged source at >= 0.95 of the
  frame, portraits never beside landscapes;
* ``bucket_no_upscale = true`` with small images mixed in: no frame smaller than its members' buckets;
* ``max_bucket_reso`` = the resolution (sd-scripts' default): squares train alone, ``check`` says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from collage_ext.commands.check import run_check
from collage_ext.geometry.buckets import Buckets
from collage_ext.geometry.shapes import area_tolerance
from collage_ext.plan.framesets import text_encoder_for
from collage_ext.plan.framestats import frame_stats
from collage_ext.plan.project import load_project
from test_collage_dataset import load
from test_content_frames import write_photos

pytestmark = pytest.mark.sdscripts

# Mixed photos (2:3, 3:4, 9:16, 3:2, 16:9, squares) plus small ones (under half the 512 px side).
PHOTOS = [(384, 576)] * 5 + [(432, 576)] * 3 + [(360, 640)] * 2 + [(576, 384)] * 4 + [(640, 360)] * 3 + [(480, 480)] * 3
SMALL = [(160, 240)] * 2 + [(240, 160)]

CONFIGS = {
    "no buckets": "enable_bucket = false",
    "no_upscale + small": "enable_bucket = true\nbucket_no_upscale = true",
    "max_bucket_reso = resolution": "enable_bucket = true\nmax_bucket_reso = 512",
}


def toml(tmp: Path, folder: Path, dataset: str, general: str = "") -> Path:
    """A dataset TOML with no collage key but ``general``; batch size 1, so samples = batches = steps."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "dataset.toml"
    path.write_text(
        f'[general]\ncaption_extension = ".txt"\n{general}\n\n[[datasets]]\nresolution = 512\n'
        f"batch_size = 1\n{dataset}\n\n"
        f'  [[datasets.subsets]]\n  image_dir = "{folder.as_posix()}"\n  num_repeats = 3\n',
        encoding="utf-8",
    )
    return path


def trainer_samples(tmp: Path, toks: fakes.TinyTokenizers, config: Path) -> tuple[int, Any]:
    """Batches per epoch of the real loader (batch size 1: samples) and the dataset."""
    group, _, _ = load(tmp, toks, config)
    return len(group), group.datasets[0]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_check_counts_what_the_trainer_gets(tmp_path: Path, toks: fakes.TinyTokenizers, name: str, mode: str) -> None:
    """check's samples per epoch equal the real loader's in the run's mode, and equal check's other-mode count
    when the run uses the other mode (check seeds differ from the trainer's: the count must not depend on it)."""
    folder = write_photos(tmp_path, PHOTOS + SMALL)
    config = toml(tmp_path, folder, CONFIGS[name], f'collage_mode = "{mode}"')
    samples, dataset = trainer_samples(tmp_path, toks, config)
    report = run_check(load_project(config, trainer_args=["--seed", "42"]), text_encoder_for({}, "sdxl"))
    modes = report.summary["modes"]
    assert modes["used"] == mode and modes[mode]["samples_per_epoch"] == samples
    assert report.summary["datasets"][0]["batches_per_epoch"] == samples
    # run in the other mode, check prints this mode's count as the alternative: the same number
    other = "static" if mode == "dynamic" else "dynamic"
    other_config = toml(tmp_path / other, folder, CONFIGS[name], f'collage_mode = "{other}"')
    report = run_check(load_project(other_config, trainer_args=["--seed", "7"]), text_encoder_for({}, "sdxl"))
    assert report.summary["modes"]["used"] == other and report.summary["modes"][mode]["samples_per_epoch"] == samples
    if name == "no buckets":  # sd-scripts asserts every sample is exactly the resolution without bucketing:
        group = dataset  # the single images (squares, small images) arrive cover-cropped to it
        group.set_current_epoch(1)
        for i in range(len(group)):
            assert tuple(group[i]["images"].shape[1:]) == (3, 512, 512)
    if mode == "dynamic":  # the frames the trainer composes keep the rule
        buckets = Buckets.from_params(
            dataset_resolution(dataset),
            {
                "enable_bucket": dataset.enable_bucket,
                "bucket_no_upscale": dataset.bucket_no_upscale,
                "max_bucket_reso": dataset.max_bucket_reso,
                "min_bucket_reso": dataset.min_bucket_reso,
            },
        )
        checked = 0
        for key, (frames, slot) in dataset._frames.items():
            params = frames.params(slot, 1)
            sources = frames.sources_of(frames.groups(1)[slot])
            stats = frame_stats(params.layout, sources, frames.pool.config.fit_mode)
            assert min(stats.spans) >= 0.95, (key, params.layout)
            kinds = {(s.size.width > s.size.height) - (s.size.width < s.size.height) for s in sources}
            assert len(kinds) == 1  # portraits never beside landscapes
            (fw, fh), _ = buckets.select(params.layout.frame)
            own = max(
                buckets.select(s.size)[0][0] * buckets.select(s.size)[0][1] if buckets.enable else buckets.area
                for s in sources
            )
            assert fw * fh >= area_tolerance(buckets) * own, (key, params.layout.frame, [s.size for s in sources])
            checked += 1
        assert checked


def dataset_resolution(dataset: Any) -> Any:
    from collage_ext.core.types import Size

    return Size(dataset.width, dataset.height)


def test_check_names_small_images_and_the_capping_setting(tmp_path: Path) -> None:
    """bucket_no_upscale: the small images that fit no group are named; max_bucket_reso = resolution: a warning
    that names the setting to change (squares cannot pair without a frame below their own bucket)."""
    folder = write_photos(tmp_path, PHOTOS + SMALL)
    small = toml(tmp_path, folder, CONFIGS["no_upscale + small"])
    report = run_check(load_project(small, trainer_args=["--seed", "42"]), text_encoder_for({}, "sdxl"))
    alone = [f for f in report.findings if f.code == "trains_alone"]
    assert alone and "p22" in alone[0].message and "bucket_no_upscale" in alone[0].message
    assert not [f for f in report.findings if f.code in ("frame_below_bucket", "scale_rule")]
    capped = toml(tmp_path / "capped", folder, CONFIGS["max_bucket_reso = resolution"])
    report = run_check(load_project(capped, trainer_args=["--seed", "42"]), text_encoder_for({}, "sdxl"))
    warned = [f for f in report.warnings if f.code == "trains_alone"]
    assert warned and "max_bucket_reso = 1024" in warned[0].message
