"""patches/: each applies to the sd-scripts version it names, and the patched behaviour works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from test_collage_dataset import dataset_toml, write_dataset

pytestmark = pytest.mark.sdscripts
PATCHES = Path(__file__).resolve().parents[2] / "patches"
SD_DIR = Path(os.environ["SD_SCRIPTS_DIR"]).resolve()
MAIN = fakes.is_strategy_era()
# Which checkouts each patch is made for (see patches/README.md).
TARGETS = {
    "0001-dataset-class-validation-split.patch": {"main"},
    "0002-debug-dataset-terminates.patch": {"main", "v0.9.1"},
    # written from the stored v0.11 sources; no v0.11 tree is reachable (see the patch's header)
    "0002-debug-dataset-terminates-v0.11.patch": {"v0.11"},
}
VERSION = "main" if MAIN else "v0.9.1"


def patched_copy(tmp: Path, patch: str) -> Path:
    """A copy of the checkout's Python sources with ``patch`` applied."""
    copy = tmp / "sd-scripts"
    shutil.copytree(SD_DIR, copy, ignore=shutil.ignore_patterns("*.dll", "__pycache__", ".git"))
    subprocess.run(["git", "apply", str(PATCHES / patch)], cwd=copy, check=True)
    return copy


@pytest.mark.parametrize("patch", sorted(TARGETS))
def test_patch_applies_to_named_versions(patch: str) -> None:
    """`git apply --check` passes on the versions a patch names (and only those are promised)."""
    result = subprocess.run(
        ["git", "apply", "--check", str(PATCHES / patch)], cwd=SD_DIR, capture_output=True, text=True
    )
    if VERSION in TARGETS[patch]:
        assert result.returncode == 0, result.stderr
    else:
        pytest.skip(f"{patch} is made for {sorted(TARGETS[patch])}, not {VERSION}")


def test_v011_form_is_the_same_change_in_library_dataset(tmp_path: Path) -> None:
    """The v0.11 hunk fits this checkout's debug_dataset loop once it lives in library/dataset.py (as in v0.11).

    The only check possible without a v0.11 tree: same context, same change, the moved file.
    """
    (tmp_path / "library").mkdir()
    shutil.copy(SD_DIR / "library" / "train_util.py", tmp_path / "library" / "dataset.py")
    patch = PATCHES / "0002-debug-dataset-terminates-v0.11.patch"
    subprocess.run(["git", "apply", str(patch)], cwd=tmp_path, check=True, capture_output=True)
    text = (tmp_path / "library" / "dataset.py").read_text(encoding="utf-8")
    assert 'if k == 27 or os.name != "nt":' in text
    unpatched = subprocess.run(["git", "apply", "--check", str(patch)], cwd=SD_DIR, capture_output=True, text=True)
    assert unpatched.returncode != 0  # no library/dataset.py before v0.11: the patch does not fit silently


def test_every_patch_is_listed() -> None:
    """No patch file without a target list and README line."""
    readme = (PATCHES / "README.md").read_text(encoding="utf-8")
    assert sorted(p.name for p in PATCHES.glob("*.patch")) == sorted(TARGETS)
    assert all(name in readme for name in TARGETS)


@pytest.mark.skipif(not MAIN, reason="validation_split exists only on sd-scripts main")
def test_validation_split_reaches_patched_trainer(
    tmp_path: Path, toks: fakes.TinyTokenizers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 0001 applied, train_network.py's own train() receives CollageDataset's validation group."""
    copy = patched_copy(tmp_path, "0001-dataset-class-validation-split.patch")
    monkeypatch.syspath_prepend(str(copy))
    for name in [m for m in sys.modules if m == "train_network" or m == "sdxl_train_network"]:
        monkeypatch.delitem(sys.modules, name)
    import sdxl_train_network  # the patched copy (library stays the original checkout's)

    assert str(copy) in sdxl_train_network.train_network.__file__
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 1.0")
    config.write_text(config.read_text().replace("batch_size = 1", "batch_size = 1\nvalidation_split = 0.25"))
    args = fakes.make_args(
        "sdxl",
        [
            "--dataset_config",
            str(config),
            "--dataset_class",
            "collage_ext.CollageDataset",
            "--tokenizer_cache_dir",
            str(toks.cache_dir),
            "--seed",
            "1",
            "--output_dir",
            str(tmp_path / "out"),
        ],
    )
    seen: dict[str, Any] = {}

    class Reached(Exception):
        """Raised once the groups reach the trainer; models are not needed for this check."""

    def capture(self: Any, args: Any, train_group: Any, val_group: Any) -> None:
        seen.update(train=train_group, val=val_group)
        raise Reached

    trainer = sdxl_train_network.SdxlNetworkTrainer()
    monkeypatch.setattr(type(trainer), "assert_extra_args", capture)
    with pytest.raises(Reached):
        trainer.train(args)
    val = seen["val"]
    assert val is not None and len(val) > 0
    assert not any(Path(i.absolute_path).name.startswith("collage") for i in val.image_data.values())
    val_keys = set(val.image_data)
    train_sources = {k for d in seen["train"].datasets for k in d.image_data}
    assert not val_keys & train_sources


def test_debug_dataset_terminates_when_patched(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    """With 0002 applied, train_util.debug_dataset returns after one epoch on Linux."""
    copy = patched_copy(tmp_path, "0002-debug-dataset-terminates.patch")
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 1.0")
    script = tmp_path / "debug.py"
    script.write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(copy)!r}, {str(Path(__file__).parent)!r}]\n"
        "import fakes\n"
        "from library import train_util\n"
        f"args = fakes.make_args('sdxl', ['--dataset_config', {str(config)!r}, '--dataset_class',"
        f" 'collage_ext.CollageDataset', '--tokenizer_cache_dir', {str(toks.cache_dir)!r}, '--debug_dataset'])\n"
        "trainer = fakes.make_trainer('sdxl')\n"
        "if fakes.is_strategy_era():\n"
        "    fakes.set_pre_dataset_strategies(trainer, args)\n"
        "    group = train_util.load_arbitrary_dataset(args)\n"
        "    fakes.set_post_dataset_strategies(trainer, args, group)\n"
        "    group.set_current_strategies()\n"
        "else:\n"
        "    group = train_util.load_arbitrary_dataset(args, trainer.load_tokenizer(args))\n"
        "train_util.debug_dataset(group)\n"
        "print('debug_dataset returned')\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=fakes.offline_env()
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "debug_dataset returned" in result.stdout
