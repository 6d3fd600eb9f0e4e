"""``policy.compose`` under ``collage_on_error = "skip"``: failed sources leave the frame, and a frame
whose every source fails (several repeats of one broken image) is filled by the first readable spare."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from collage_ext.core.config import CollageConfig
from collage_ext.core.errors import CollageInputError
from collage_ext.core.types import Size
from collage_ext.plan.collage import Collage, load_source
from collage_ext.plan.policy import FailureLog, compose


def sources(tmp_path: Path) -> list:
    """A broken PNG (header fine, pixels truncated) and three good ones, in pool order."""
    out = []
    for i, color in enumerate(["red", "green", "blue", "white"]):
        path = tmp_path / f"img_{i}.png"
        Image.new("RGB", (96, 128), color).save(path)
        out.append(load_source(path, f"img_{i}", caption=f"id{i}"))
    data = (tmp_path / "img_0.png").read_bytes()
    (tmp_path / "img_0.png").write_bytes(data[: len(data) // 2])
    return out


def test_a_frame_of_one_broken_image_is_filled_by_the_first_readable_spare(tmp_path: Path) -> None:
    pool = sources(tmp_path)
    collage = Collage(CollageConfig(rate=1.0, on_error="skip"), Size(256, 256))
    broken = [pool[0], pool[0]]  # two repeats of the broken image in one frame
    params = collage.make_params(broken, seed=1, epoch=1)
    failures = FailureLog()
    with pytest.raises(CollageInputError, match="every image of this frame failed"):
        compose(collage, broken, params, failures)
    rendered, used = compose(collage, broken, params, FailureLog(), spares=pool)
    assert used.keys == ("img_1",) and collage.caption(used) == "id1"
    assert tuple(rendered.image[128, 128]) == (0, 128, 0)  # green, the spare, fills the frame
    again, used_again = compose(collage, broken, params, failures, spares=pool)  # failure already known
    assert used_again == used and (again.image == rendered.image).all()
