"""sd-scripts' own tools/cache_latents.py with --dataset_class collage_ext.CollageDataset (static frames)."""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from test_collage_dataset import dataset_toml, write_dataset

pytestmark = pytest.mark.sdscripts
SD_DIR = Path(os.environ["SD_SCRIPTS_DIR"]).resolve()


def tool(name: str) -> ModuleType:
    """Import one of the checkout's tools/*.py scripts as a module."""
    spec = importlib.util.spec_from_file_location(f"sd_tool_{name}", SD_DIR / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # sd-scripts' sources have invalid escape sequences (SyntaxWarning)
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


class ToolVAE(fakes.FakeVAE):
    """The fake VAE plus the attention switch the tool calls."""

    def set_use_memory_efficient_attention_xformers(self, enabled: bool) -> None:
        """No-op: there is no attention in the fake."""


def test_cache_latents_tool_writes_frame_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tool runs unchanged on collage frames: one latent npz per static frame, none by the sources."""
    toks = fakes.make_tokenizer_cache(tmp_path / "tok")
    image_dir = write_dataset(tmp_path)
    config = dataset_toml(tmp_path, image_dir, general="collage_rate = 1.0\ncollage_variants = 1")
    module = tool("cache_latents")
    vae = ToolVAE(4)
    sdxl_train_util = fakes.import_sd("library.sdxl_train_util")

    def load_target_model(*_args: Any, **_kwargs: Any) -> tuple[Any, ...]:  # weights are the only fake
        return (None, None, None, vae, None, None, None)

    monkeypatch.setattr(sdxl_train_util, "load_target_model", load_target_model)
    args = module.setup_parser().parse_args(
        [
            "--sdxl",
            "--pretrained_model_name_or_path",
            "unused",
            "--dataset_class",
            "collage_ext.CollageDataset",
            "--dataset_config",
            str(config),
            "--tokenizer_cache_dir",
            str(toks.cache_dir),
            "--cache_latents_to_disk",
            "--output_dir",
            str(tmp_path / "out"),
            "--seed",
            "1",
            "--max_data_loader_n_workers",
            "0",
            # v0.9.1's tool walks the DataLoader, repeats included: a frame that a variant holds twice (one
            # image, num_repeats 2; it depends on the tmp path through the derived pool key) would be encoded
            # twice without this, as a plain image with num_repeats 2 is.
            "--skip_existing",
        ]
    )
    fakes.import_sd("library.train_util").prepare_dataset_args(args, True)
    module.cache_to_disk(args)
    cache = tmp_path / "out" / "collage_cache"
    frames = sorted(cache.glob("collage_*.png"))
    npz = sorted(cache.glob("*.npz"))
    assert frames and len(npz) == len(frames) and vae.num_encoded == len(frames)
    assert not list(image_dir.glob("*.npz"))
