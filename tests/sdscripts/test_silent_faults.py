"""Issue 20: inputs that trained the wrong thing without a word, through the REAL sd-scripts loader.

Each case either trains what the user meant or stops with a message naming the file or key and the
fix (docs/reliability.md lists every case and its outcome).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes  # noqa: E402
from test_collage_dataset import dataset_toml, id_counts, load  # noqa: E402
from test_runtime_faults import SIZES, write_images  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

pytestmark = pytest.mark.sdscripts
MAIN = fakes.is_strategy_era()


def samples(group: Any, epoch: int = 1) -> list[tuple[str, str]]:
    """(caption, sha256 of the image tensor) of every sample of an epoch, in index order."""
    group.set_current_epoch(epoch)
    out = []
    for i in range(len(group)):
        example = group[i]
        for n, caption in enumerate(example["captions"]):
            out.append((caption, hashlib.sha256(example["images"][n].numpy().tobytes()).hexdigest()))
    return out


# -- 1. static mode + skip without cached latents -----------------------------------------------------
STATIC_WITHOUT_LATENTS = {
    "collage_mode-static": ('collage_mode = "static"', ()),
    "cached-te-outputs": ("", ("--cache_text_encoder_outputs", "--network_train_unet_only")),
}


@pytest.mark.parametrize("how", list(STATIC_WITHOUT_LATENTS))
def test_static_skip_trains_the_frames(tmp_path: Path, toks: fakes.TinyTokenizers, how: str,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Static frames under skip load as the frames they are, pixel for pixel as under raise, not one source
    photo for every frame (the skip path once looked the frame up among the sources and fell back to the first)."""
    monkeypatch.setattr(sys, "argv", ["sdxl_train_network.py", "--seed", "42"])  # one seed for both configs
    folder = write_images(tmp_path / "img")
    extra, flags = STATIC_WITHOUT_LATENTS[how]
    seen = {}
    for policy in ("raise", "skip"):
        (tmp_path / policy).mkdir()
        config = dataset_toml(tmp_path / policy, folder, general=f'collage_rate = 1.0\ncollage_on_error = "{policy}"\n'
                                                                 f"{extra}")
        with fakes.fresh_strategies():
            group, _, _ = load(tmp_path / policy, toks, config, *flags)
        assert group.datasets[0]._static, "static mode expected"
        seen[policy] = samples(group)
    assert sorted(seen["skip"]) == sorted(seen["raise"])  # frame names hash the policy: another order
    collages = [(c, h) for c, h in seen["skip"] if c.count("id") >= 2]
    assert collages and len({h for _, h in collages}) == len(set(collages))
    assert id_counts([c for c, _ in seen["skip"]]) == {f"id{i:03d}": 2 for i in range(len(SIZES))}
