"""The one-line enable in each real training script: its own argument parsing and train() up to the model.

Each script runs from its parser through dataset creation, buckets and argument checks; the test
stops it where model weights would be loaded (the only part that needs files we do not have) and
checks that CollageDataset built collage frames.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from collage_ext.sdscripts.trainers import REFUSED  # the family table's refusals
from test_collage_dataset import ID, dataset_toml, write_dataset

pytestmark = pytest.mark.sdscripts
MAIN = fakes.is_strategy_era()


class Reached(Exception):
    """The script got as far as loading model weights."""


def script(name: str) -> Any:
    """Import a training script module of the checkout (its sources trip -W error at compile time)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


SCRIPTS = [
    ("train_network", []),
    ("sdxl_train_network", []),
    ("sdxl_train", []),
    pytest.param("flux_train_network", [], marks=pytest.mark.skipif(not MAIN, reason="Flux is main-only")),
    pytest.param(
        "flux_train_network",
        ["--model_type", "chroma", "--apply_t5_attn_mask"],
        marks=pytest.mark.skipif(not MAIN, reason="Chroma is main-only"),
        id="chroma",
    ),
    pytest.param("sd3_train_network", [], marks=pytest.mark.skipif(not MAIN, reason="SD3 is main-only")),
]


@pytest.mark.parametrize(("name", "extra"), SCRIPTS)
def test_one_line_enable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, extra: list[str]) -> None:
    """`--dataset_class collage_ext.CollageDataset` in the real script yields collage frames."""
    from collage_ext.sdscripts import dataset as adapter

    toks = fakes.make_tokenizer_cache(tmp_path / "tok")
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 1.0")
    module = script(name)
    model = (
        str(fakes.make_flux_checkpoint_stub(tmp_path / "flux1-dev.safetensors"))
        if name.startswith("flux")
        else "unused.safetensors"
    )
    argv = [
        "--pretrained_model_name_or_path",
        model,
        "--dataset_class",
        "collage_ext.CollageDataset",
        "--dataset_config",
        str(config),
        "--tokenizer_cache_dir",
        str(toks.cache_dir),
        "--seed",
        "3",
        "--output_dir",
        str(tmp_path / "out"),
        "--max_data_loader_n_workers",
        "0",
        *extra,
    ]
    if name != "sdxl_train":
        argv += ["--network_module", "networks.lora"]
    if name.startswith("flux"):
        argv += ["--ae", "unused", "--clip_l", "unused", "--t5xxl", "unused"]
    if name.startswith("sd3"):
        argv += ["--clip_l", "unused", "--clip_g", "unused", "--t5xxl", "unused"]
    args = module.setup_parser().parse_args(argv)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
    built: list[Any] = []
    original_init = adapter.CollageDataset.__init__

    def keep(self: Any, *a: Any, **k: Any) -> None:
        original_init(self, *a, **k)
        built.append(self)

    monkeypatch.setattr(adapter.CollageDataset, "__init__", keep)

    def stop(*_args: Any, **_kwargs: Any) -> None:
        raise Reached

    if name == "sdxl_train":
        monkeypatch.setattr(module.sdxl_train_util, "load_target_model", stop)
        with pytest.raises(Reached):
            module.train(args)
    else:
        trainer_class = {
            "train_network": "NetworkTrainer",
            "sdxl_train_network": "SdxlNetworkTrainer",
            "flux_train_network": "FluxNetworkTrainer",
            "sd3_train_network": "Sd3NetworkTrainer",
        }[name]
        trainer = getattr(module, trainer_class)()
        monkeypatch.setattr(type(trainer), "load_target_model", stop)
        with pytest.raises(Reached):
            trainer.train(args)
    (group,) = built
    info = group.datasets[0]._collage_info[0]
    assert info["collage_frames"] >= 2 and info["single_samples"] == 0
    assert group.datasets[0].bucket_info["collage_ext"]["seed"] == 3
    group.set_current_strategies() if MAIN else None
    assert len(ID.findall(group[0]["captions"][0])) >= 2


@pytest.mark.parametrize("refused", sorted(REFUSED))
def test_unsupported_trainers_refuse_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toks: fakes.TinyTokenizers, refused: str
) -> None:
    """Scripts whose caption budget collage_ext does not model stop when the dataset is built, with the reason."""
    from collage_ext.core.errors import CollageConfigError
    from test_collage_dataset import load

    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 1.0")
    monkeypatch.setattr(sys, "argv", [f"/opt/sd-scripts/{refused}.py"])
    with pytest.raises(CollageConfigError, match=rf"does not support {refused}\.py: .+ sdxl_train_network\.py"):
        load(tmp_path, toks, config)


@pytest.mark.skipif(not MAIN, reason="tokenize strategies are main-only")
@pytest.mark.parametrize("family", ["Lumina", "Anima", "HunyuanImage"])
def test_unsupported_tokenize_strategy_refuses(tmp_path: Path, toks: fakes.TinyTokenizers, family: str) -> None:
    """A renamed script is still caught by the tokenize strategy it set before building the dataset."""
    from collage_ext.core.errors import CollageConfigError
    from collage_ext.sdscripts.trainers import refuse_unsupported

    strategy_base = fakes.import_sd("library.strategy_base")
    strategy = type(f"{family}TokenizeStrategy", (strategy_base.TokenizeStrategy,), {})()
    with pytest.raises(CollageConfigError, match="does not support"):
        refuse_unsupported("my_renamed_trainer.py", strategy)
    refuse_unsupported("my_renamed_trainer.py", None)  # unknown script, no strategy: not refused
