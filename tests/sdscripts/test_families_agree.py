"""The CLI and the adapter pick the same model family and caption budget for every supported trainer script.

Each supported script of the family table (``collage_ext.kohya.families``) runs its real start-up
(argument parsing, tokenize strategy, dataset) with ``--dataset_class collage_ext.CollageDataset``
and stops where the accelerator and model weights would come next. The adapter's family and budget
are recorded there; the CLI reads the same command line with no sd-scripts (as
``collage-ext check -- ARGS`` does). sd-scripts v0.9.1 has no tokenize strategies (the adapter
goes by the script's name) and no Flux / SD3 scripts (those cases skip there).

``flux_train.py`` (full Flux fine-tune) sets its tokenize strategy only after building the dataset:
the adapter sizes captions from the family's row and loads the tokenizer the script will load, so
it trains; its budget is checked against sd-scripts' own schnell test of the checkpoint.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from collage_ext.captions import TokenBudget
from collage_ext.kohya import families
from collage_ext.kohya.datasets import build_run
from collage_ext.plan.framesets import text_encoder_for
from test_collage_dataset import ID, dataset_toml, write_dataset

pytestmark = pytest.mark.sdscripts
SD_DIR = Path(os.environ.get("SD_SCRIPTS_DIR", ".")).resolve()
CAPTION = "sks, a photo of a red fox, looking_at_viewer, 1girl"


class Reached(Exception):
    """The script got past its dataset, to the accelerator."""


@dataclass(frozen=True)
class Case:
    """One trainer command line and the row it must land on."""

    script: str
    family: str
    extra: tuple[str, ...] = ()
    schnell: bool = False


def _cases() -> list[Any]:
    """Every supported script of the table with its base row, and every variant on its group's first script."""
    cases = []
    for family in families.FAMILIES:
        if family.refused:
            continue
        if not family.group:
            cases += [Case(s, family.name) for s in family.scripts if s not in family.refused_scripts]
            continue
        script = families.by_name(family.group).scripts[0]
        extra = tuple(
            a
            for option, value in family.option_values
            for a in ((f"--{option}",) if value is True else (f"--{option}", str(value)))
        )
        extra += ("--apply_t5_attn_mask",) if family.name == "chroma" else ()  # flux_train_network asserts it
        cases.append(Case(script, family.name, extra, schnell=bool(family.checkpoint_lacks)))
    cases.append(Case("sd3_train_network", "sd3", ("--t5xxl_max_token_length", "154")))
    cases.append(Case("sdxl_train_network", "sdxl", ("--max_token_length", "225")))
    return [pytest.param(c, id="-".join([c.script, c.family, *(a.lstrip("-") for a in c.extra[:2])])) for c in cases]


def _header_checkpoint(path: Path, keys: list[str]) -> Path:
    header = json.dumps({k: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} for k in keys}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    return path


def _checkpoint(tmp: Path, case: Case) -> Path:
    """A checkpoint the script never loads (it stops before), with the tensor names of its model family."""
    base = families.by_name(case.family).base
    if base == "flux":
        return fakes.make_flux_checkpoint_stub(tmp / "flux1.safetensors", schnell=case.schnell)
    keys = {
        "sd": ["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"],
        "sdxl": ["conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight"],
        "sd3": ["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"],
    }[base]
    return _header_checkpoint(tmp / "model.safetensors", keys)


def _module(name: str) -> Any:
    if not (SD_DIR / f"{name}.py").is_file():
        pytest.skip(f"{name}.py is not in this sd-scripts ({SD_DIR.name})")
    with warnings.catch_warnings():  # their sources trip -W error at compile time
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


@dataclass
class AdapterSaw:
    """What CollageDataset decided while the script built it."""

    family: list[Any] = field(default_factory=list)
    tools: list[tuple[TokenBudget, Any]] = field(default_factory=list)


def run_start_up(
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    toks: fakes.TinyTokenizers,
    case: Case,
) -> tuple[list[str], AdapterSaw, Any, Any]:
    """Run ``case.script`` up to its accelerator; returns (argv, what the adapter saw, dataset group, module)."""
    from collage_ext.sdscripts import captioning
    from collage_ext.sdscripts import dataset as adapter

    module = _module(case.script)
    config = dataset_toml(
        tmp, write_dataset(tmp), general="collage_rate = 1.0", subset='collage_repeat_phrases = ["sks"]'
    )
    argv = [
        "--pretrained_model_name_or_path",
        str(_checkpoint(tmp, case)),
        "--dataset_class",
        "collage_ext.CollageDataset",
        "--dataset_config",
        str(config),
        "--tokenizer_cache_dir",
        str(toks.cache_dir),
        "--seed",
        "3",
        "--output_dir",
        str(tmp / "out"),
        "--max_data_loader_n_workers",
        "0",
        *case.extra,
    ]
    if case.script.endswith("_network"):
        argv += ["--network_module", "networks.lora"]
    argv += {
        "flux": ["--ae", "unused", "--clip_l", "unused", "--t5xxl", "unused"],
        "sd3": ["--clip_l", "unused", "--clip_g", "unused", "--t5xxl", "unused"],
    }.get(families.by_name(case.family).base, [])
    args = module.setup_parser().parse_args(argv)
    monkeypatch.setattr(sys, "argv", [str(SD_DIR / f"{case.script}.py"), *argv])

    saw = AdapterSaw()
    refuse, tools = adapter.refuse_unsupported, captioning.token_tools
    monkeypatch.setattr(
        adapter, "refuse_unsupported", lambda *a, **k: saw.family.append(refuse(*a, **k)) or saw.family[-1]
    )
    monkeypatch.setattr(captioning, "token_tools", lambda *a, **k: saw.tools.append(tools(*a, **k)) or saw.tools[-1])
    built: list[Any] = []
    original_init = adapter.CollageDataset.__init__

    def keep(self: Any, *a: Any, **k: Any) -> None:
        original_init(self, *a, **k)
        built.append(self)

    def stop(*_args: Any, **_kwargs: Any) -> None:
        raise Reached

    monkeypatch.setattr(adapter.CollageDataset, "__init__", keep)
    monkeypatch.setattr(fakes.import_sd("library.train_util"), "prepare_accelerator", stop)
    trainers = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and c.__module__ == module.__name__ and c.__name__.endswith("NetworkTrainer")
    ]
    with pytest.raises(Reached):
        trainers[0]().train(args) if trainers else module.train(args)
    (group,) = built
    return argv, saw, group, module


@pytest.mark.parametrize("case", _cases())
def test_cli_and_adapter_pick_the_same_family(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toks: fakes.TinyTokenizers, case: Case
) -> None:
    """Same row, same budget, same token counts: ``check`` / ``preview`` size captions as the trainer does."""
    argv, saw, group, _ = run_start_up(tmp_path, monkeypatch, toks, case)
    cli = text_encoder_for(build_run(trainer_args=argv).values)
    ((family, why),) = saw.family
    assert saw.tools, "the adapter never sized a caption (collage_repeat_phrases is set)"
    budgets = {budget for budget, _ in saw.tools}
    assert family.name == cli.model == case.family, (why, cli.why)
    assert budgets == {cli.budget}
    for _, counter in saw.tools:
        assert counter is not None and counter(CAPTION) == cli.counter(CAPTION) and cli.exact
    if case.extra[:1] == ("--t5xxl_max_token_length",):
        assert cli.budget.max_tokens == int(case.extra[1])
    assert group.datasets[0]._collage_info[0]["collage_frames"] >= 2


def test_sd3_counts_256_t5_tokens_like_its_trainer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toks: fakes.TinyTokenizers
) -> None:
    """sd3_train_network.py pads/truncates T5 to ``--t5xxl_max_token_length`` (default 256); so do check and preview."""
    _, saw, _, _ = run_start_up(tmp_path, monkeypatch, toks, Case("sd3_train_network", "sd3"))
    strategy = fakes.import_sd("library.strategy_base").TokenizeStrategy.get_strategy()
    parser_default = fakes.import_sd("sd3_train_network").setup_parser().get_default("t5xxl_max_token_length")
    assert saw.tools[0][0].max_tokens == strategy.t5xxl_max_length == parser_default
    assert text_encoder_for({}, "sd3").budget.max_tokens == parser_default


@pytest.mark.parametrize("schnell", [False, True], ids=["dev", "schnell"])
def test_flux_train_sizes_captions_before_its_strategy_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toks: fakes.TinyTokenizers, schnell: bool
) -> None:
    """flux_train.py builds the dataset with no tokenize strategy set; the adapter uses the row's budget.

    The budget must be what the script sets afterwards: ``--t5xxl_max_token_length``, else 256 for a
    schnell checkpoint and 512 for dev, by sd-scripts' own ``analyze_checkpoint_state``.
    """
    case = Case("flux_train", "flux-schnell" if schnell else "flux", schnell=schnell)
    argv, saw, group, module = run_start_up(tmp_path, monkeypatch, toks, case)
    ((family, why),) = saw.family
    assert "script flux_train.py" in why
    _, is_schnell, _, _ = module.flux_utils.analyze_checkpoint_state(argv[1])
    assert is_schnell == schnell
    assert saw.tools[0][0] == families.T5.make_budget(256 if is_schnell else 512)
    # the strategy the script sets next (with our tokenizer folder): the frames come out with merged captions
    strategy_flux = fakes.import_sd("library.strategy_flux")
    fakes.import_sd("library.strategy_base").TokenizeStrategy.set_strategy(
        strategy_flux.FluxTokenizeStrategy(saw.tools[0][0].max_tokens, str(toks.cache_dir))
    )
    group.set_current_strategies()
    assert len(ID.findall(group[0]["captions"][0])) >= 2


def test_options_belong_to_their_family_only() -> None:
    """A row's ``options`` are accepted by one of its scripts and by no script of another family here.

    That is what lets the CLI name a family from any one of them, in any order.
    """
    accepted: dict[str, set[str]] = {}
    for family in families.FAMILIES:
        for script in family.scripts + tuple(family.refused_scripts):
            if (SD_DIR / f"{script}.py").is_file():
                parser = _module(script).setup_parser()
                accepted.setdefault(family.base, set()).update(a.dest for a in parser._actions)
    assert {"sd", "sdxl"} <= set(accepted)
    for family in families.FAMILIES:
        if family.base not in accepted:
            continue  # not in this sd-scripts (v0.9.1: no Flux, SD3, Lumina ...)
        others = set().union(*(opts for base, opts in accepted.items() if base != family.base))
        assert set(family.options) <= accepted[family.base], family.name
        assert set(family.options) & others == set(), family.name
        assert {o for o, _ in family.option_values} <= accepted[family.base], family.name
