"""The model family table (collage_ext.kohya.families) and everything generated from it, without sd-scripts.

tests/sdscripts/test_families_agree.py proves against the real trainer scripts that the CLI and the
adapter pick the same row and budget.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from collage_ext.cli import setup_parser
from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya import families
from collage_ext.kohya.families import FAMILIES, Family
from collage_ext.plan.framesets import text_encoder_for
from collage_ext.sdscripts import seams, trainers

SUPPORTED = [f for f in FAMILIES if not f.refused]
REFUSED = [f for f in FAMILIES if f.refused]


def write_safetensors_header(path: Path, keys: list[str]) -> Path:
    """A file with only a safetensors header naming ``keys`` (enough for a header reader)."""
    header = json.dumps(
        {"__metadata__": {}, **{k: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} for k in keys}}
    ).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    return path


def recognising_values(family: Family) -> dict[str, object]:
    """Training arguments that name ``family`` by its table row alone."""
    base = families.by_name(family.base)
    values: dict[str, object] = {}
    if base.options:
        values[base.options[0]] = "x"
    elif base.hints:
        values[base.hints[0]] = True
    values.update(dict(family.option_values))
    return values


def test_every_script_maps_to_one_family() -> None:
    """Supported and refused scripts each belong to exactly one row; the trainer lists come from the table."""
    scripts = [s for f in FAMILIES for s in (*f.scripts, *f.refused_scripts)]
    assert len(scripts) == len(set(scripts))
    for script in scripts:
        family = families.by_script(f"/opt/sd-scripts/{script}.py")
        assert family is not None and script in (*family.scripts, *family.refused_scripts)
    assert set(trainers.SUPPORTED) == {f"{s}.py" for f in SUPPORTED for s in f.scripts if s not in f.refused_scripts}
    assert set(trainers.REFUSED) == {s for f in REFUSED for s in f.scripts} | {
        s for f in FAMILIES for s in f.refused_scripts
    }
    assert all(why for why in trainers.REFUSED.values())
    assert "sd3_train_network.py" in trainers.SUPPORTED and "sd3_train" in trainers.REFUSED
    assert families.by_script("my_own_trainer.py") is None


def test_model_choices_are_the_table() -> None:
    """``--model`` offers auto and every supported family, nothing else."""
    check = setup_parser()._subparsers._group_actions[0].choices["check"]  # type: ignore[union-attr]
    (action,) = [a for a in check._actions if a.dest == "model"]
    assert tuple(action.choices) == ("auto", *(f.name for f in SUPPORTED))
    assert "sd3" in action.choices and "flux-schnell" in action.choices


def test_rows_are_complete() -> None:
    """Tokenizer and budget for supported rows, a reason for refused ones, groups and variants that exist."""
    for family in FAMILIES:
        assert family.title
        if family.refused:
            assert family.tokenizer is None and family.scripts
            with pytest.raises(CollageConfigError, match=f"does not support {family.title}"):
                family.budget()
            continue
        assert family.tokenizer is not None
        assert family.budget().kind == family.tokenizer.kind
        assert families.by_name(family.base).group == ""
        if family.group:  # a variant must be recognisable within its group
            assert family.option_values or family.checkpoint_lacks
            assert not family.scripts and not family.options
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)
    assert families.DEFAULT in {f.name for f in SUPPORTED}


def test_options_name_one_family() -> None:
    """An option in ``options`` belongs to one row and is nobody's hint (else detection would depend on order)."""
    owners: dict[str, list[str]] = {}
    for family in FAMILIES:
        for option in (*family.options, *family.hints):
            owners.setdefault(option, []).append(family.name)
    assert {o: n for o, n in owners.items() if len(n) > 1} == {}


@pytest.mark.parametrize("family", [f for f in FAMILIES if not f.checkpoint_lacks], ids=lambda f: f.name)
def test_detect_from_arguments(family: Family) -> None:
    """The CLI recognises every row from its options (variants: their values; schnell: test_flux_schnell_...)."""
    values = recognising_values(family)
    if family.name == families.DEFAULT:
        assert families.detect({})[0] is family
    else:
        assert values, f"{family.name} has nothing the CLI could recognise it by"
        assert families.detect(values)[0] is family


def test_flux_schnell_from_the_checkpoint(tmp_path: Path) -> None:
    """Like sd-scripts: a Flux checkpoint without the guidance embedder is schnell (256 T5 tokens)."""
    schnell = write_safetensors_header(
        tmp_path / "schnell.safetensors", ["double_blocks.0.img_attn.proj.bias", "single_blocks.0.modulation.lin.bias"]
    )
    dev = write_safetensors_header(
        tmp_path / "dev.safetensors", ["model.diffusion_model.guidance_in.in_layer.bias", "double_blocks.0.x"]
    )
    args = {"t5xxl": "t5.safetensors"}
    assert families.detect({**args, "pretrained_model_name_or_path": str(schnell)})[0].name == "flux-schnell"
    assert families.detect({**args, "pretrained_model_name_or_path": str(dev)})[0].name == "flux"
    assert families.detect({**args, "pretrained_model_name_or_path": str(tmp_path / "missing")})[0].name == "flux"
    assert (
        families.detect({**args, "pretrained_model_name_or_path": str(schnell), "model_type": "chroma"})[0].name
        == "chroma"
    )  # Chroma has no guidance embedder either
    assert families.detect({"pretrained_model_name_or_path": str(schnell)})[0].name == "flux-schnell"
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    assert families.checkpoint_keys(tmp_path / "bad.safetensors") is None
    encoder = text_encoder_for({**args, "pretrained_model_name_or_path": str(schnell)})
    assert (encoder.model, encoder.budget.max_tokens) == ("flux-schnell", 256)


@pytest.mark.parametrize(
    ("keys", "family"),
    [
        (["model.diffusion_model.input_blocks.0.0.weight", "cond_stage_model.transformer.text_model.x"], "sd"),
        (["model.diffusion_model.input_blocks.0.0.weight", "conditioner.embedders.1.model.x"], "sdxl"),
        (["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"], "sd3"),
    ],
)
def test_family_from_the_checkpoint(tmp_path: Path, keys: list[str], family: str) -> None:
    """The checkpoint's tensor names name the family where no option does, ahead of shared options."""
    path = write_safetensors_header(tmp_path / "model.safetensors", keys)
    assert families.detect({"pretrained_model_name_or_path": str(path)})[0].name == family
    if family == "sd3":  # --t5xxl alone would mean Flux
        assert families.detect({"pretrained_model_name_or_path": str(path), "t5xxl": "t"})[0].name == "sd3"


def test_budgets_follow_the_length_option() -> None:
    """Defaults per row (SD3: 256, the trainer's ``--t5xxl_max_token_length`` default), overridden by the option."""
    assert text_encoder_for({"clip_g": "g.safetensors"}).budget.max_tokens == 256
    assert text_encoder_for({}, "sd3").budget.max_tokens == 256
    assert text_encoder_for({"t5xxl_max_token_length": 154}, "sd3").budget.max_tokens == 154
    assert text_encoder_for({}, "flux").budget.max_tokens == 512
    assert text_encoder_for({"max_token_length": 150}, "sdxl").budget.max_tokens == 150
    for family in SUPPORTED:
        encoder = text_encoder_for({}, family.name)
        assert encoder.model == family.name and encoder.budget == family.budget()
        assert encoder.kind == family.tokenizer.label  # type: ignore[union-attr]
    with pytest.raises(CollageConfigError, match="max_token_length"):
        text_encoder_for({"max_token_length": 100}, "sdxl")


def test_refused_families_stop_the_cli_and_the_trainer() -> None:
    """Arguments of a refused family stop ``check`` with the trainer's own message."""
    for family in REFUSED:
        values = recognising_values(family)
        with pytest.raises(CollageConfigError, match=re.escape(f"does not support {family.title}: {family.refused}")):
            text_encoder_for(values)
        with pytest.raises(CollageConfigError, match=f"does not support {family.title}"):
            trainers.refuse_unsupported("renamed.py", None, values)
        for script in family.scripts:
            with pytest.raises(CollageConfigError, match=rf"does not support {script}\.py: .+ sdxl_train_network\.py"):
                trainers.refuse_unsupported(f"/opt/{script}.py")
    assert trainers.refuse_unsupported("renamed.py", None, {})[0].name == families.DEFAULT


def test_seams_map_strategies_to_rows() -> None:
    """Every group has a tokenize strategy the adapter recognises; every strategy seam names a row."""
    mapped = {seam.family for seam in seams.TOKENIZE_STRATEGIES}
    assert mapped == {f.name for f in FAMILIES if not f.group}
    for seam in seams.TOKENIZE_STRATEGIES:
        family = families.by_name(seam.family)
        assert bool(seam.tokenizer) == (family.tokenizer is not None)
        assert bool(seam.length) == (family.tokenizer is families.T5)
