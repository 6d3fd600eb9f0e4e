"""The seams: every sd-scripts name the adapter uses exists in the checkout, and a missing one stops
training at start-up, before any model loads, with a message that names the version and the seam."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from collage_ext.sdscripts import seams
from test_collage_dataset import dataset_toml, write_dataset

pytestmark = pytest.mark.sdscripts
REPO = Path(__file__).resolve().parents[2]


def sd_root() -> Path:
    """The checkout under test."""
    return Path(os.environ["SD_SCRIPTS_DIR"]).resolve()


def test_every_seam_exists_in_this_checkout() -> None:
    """The list is complete for the trees CI runs (a seam that vanished upstream fails here first)."""
    assert seams.missing() == []
    assert seams.sd_scripts_version().startswith(("sd-scripts 0.9.1", "sd-scripts 0.10."))


def test_a_missing_seam_stops_training_before_any_model_loads(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """A copy of the checkout whose datasets lost ``load_image_with_face_info``: the real script stops at once."""
    tree = tmp_path / "sd-scripts"
    shutil.copytree(sd_root(), tree, ignore=shutil.ignore_patterns(".git", "docs", "images", "__pycache__"))
    train_util = tree / "library" / "train_util.py"
    source = train_util.read_text(encoding="utf-8")
    assert "    def load_image_with_face_info(" in source
    train_util.write_text(
        source.replace("    def load_image_with_face_info(", "    def load_image_renamed("), encoding="utf-8"
    )
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 1.0")
    model = tmp_path / "model.safetensors"  # absent: loading it would fail with a different error
    cmd = [
        sys.executable,
        "sdxl_train_network.py",
        "--pretrained_model_name_or_path",
        str(model),
        "--dataset_class",
        "collage_ext.CollageDataset",
        "--dataset_config",
        str(config),
        "--tokenizer_cache_dir",
        str(toks.cache_dir),
        "--output_dir",
        str(tmp_path / "out"),
        "--network_module",
        "networks.lora",
        "--max_data_loader_n_workers",
        "0",
        "--seed",
        "1",
    ]
    env = fakes.offline_env()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(tree)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "CollageConfigError: collage_ext cannot run with sd-scripts " in output, output[-3000:]
    assert "library.train_util.DreamBoothDataset" in output and "'load_image_with_face_info'" in output
    assert "known to work with sd-scripts v0.9.1, v0.10.0, v0.10.1" in output
    assert "load_target_model" not in output and "load_models_from" not in output  # no model was touched
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
