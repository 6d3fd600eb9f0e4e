"""The model families collage_ext sizes captions for: one table that the CLI and the adapter both read.

A family decides a run's caption budget: which text encoder reads the merged caption (CLIP in
75-token chunks, or T5 in one sequence) and how many tokens it reads. Two sides must pick the same
family for the same run, or ``check`` / ``preview`` count captions against a budget the trainer
does not use:

* the CLI (no sd-scripts, no torch) recognises it from the training arguments (``detect``);
* the adapter recognises it from the tokenize strategy the training script set before building the
  dataset (``sdscripts.seams.strategy_family`` maps sd-scripts' classes to the names here), else
  from the script's name (``by_script``: sd-scripts v0.9.1 has no strategies, and some scripts set
  theirs only after the dataset is built), else like the CLI.

Both then refine within the strategy's group with the same rule (``refine``: Chroma and Flux
schnell share Flux's tokenize strategy), and size captions with ``Family.budget``. Trainer refusals
(``sdscripts.trainers``), the CLI's ``--model`` choices and the token budgets are generated from
``FAMILIES``; adding a family is one row here (plus a line in ``seams`` when it brings a new
tokenize strategy class).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from collage_ext.captions import TokenBudget, clip_budget, t5_budget
from collage_ext.core.errors import CollageConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tokenizer:
    """How a family's text encoder reads a caption, and the sd-scripts option that sets how far.

    Attributes:
        kind: the ``TokenBudget`` kind (``clip``: 75-token chunks, first chunk pooled; ``t5``: one sequence).
        label: shown in reports (``CLIP``, ``T5``).
        hf_id: the Hugging Face tokenizer sd-scripts loads (also the ``--tokenizer_cache_dir`` folder name).
        hf_class: its ``transformers`` class.
        length_option: the training option that sets the budget.
        make_budget: builds the budget from that option's value (``None``: the family's default).
        lengths: the values ``length_option`` accepts, for hints; empty when any positive length does.
    """

    kind: Literal["clip", "t5"]
    label: str
    hf_id: str
    hf_class: str
    length_option: str
    make_budget: Callable[[int | None], TokenBudget]
    lengths: tuple[int, ...] = ()

    def raise_hint(self, budget: TokenBudget) -> str:
        """`` or raise --max_token_length (75/150/225)`` while a longer budget exists, else ``""``."""
        if self.lengths and budget.max_tokens < max(self.lengths):
            return f" or raise --{self.length_option} ({'/'.join(str(n) for n in self.lengths)})"
        return ""

    def load(self, cache_dir: object = None, *, download: bool = False) -> Any:
        """The real tokenizer, or ``None`` (no ``transformers``, not found offline, ``COLLAGE_EXT_NO_TOKENIZER``).

        ``cache_dir`` is sd-scripts' ``--tokenizer_cache_dir`` (one ``save_pretrained`` folder per
        tokenizer); otherwise the Hugging Face cache, fetched only with ``download`` (what the
        training script itself does a moment later).
        """
        if os.environ.get("COLLAGE_EXT_NO_TOKENIZER"):
            return None
        try:
            import importlib.util

            if importlib.util.find_spec("transformers") is None:
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import transformers

                cls = getattr(transformers, self.hf_class)
                local = os.path.join(str(cache_dir), self.hf_id.replace("/", "_")) if cache_dir else None
                if local and os.path.isdir(local):
                    return cls.from_pretrained(local, local_files_only=True)
                return cls.from_pretrained(self.hf_id, local_files_only=not download)
        except Exception as exc:  # noqa: BLE001 - any failure means: count with the estimate instead
            logger.debug(f"no local tokenizer {self.hf_id}: {type(exc).__name__}: {exc}")
            return None


CLIP = Tokenizer(
    "clip", "CLIP", "openai/clip-vit-large-patch14", "CLIPTokenizer", "max_token_length", clip_budget, (75, 150, 225)
)


def _t5_table_budget(length: int | None) -> TokenBudget:
    """``t5_budget`` as ``Family.budget`` calls it: T5 has no length of its own, each T5 family sets one."""
    if length is None:
        raise CollageConfigError("a T5 family needs default_length (t5 max_tokens must be a positive integer)")
    return t5_budget(length)


T5 = Tokenizer("t5", "T5", "google/t5-v1_1-xxl", "T5TokenizerFast", "t5xxl_max_token_length", _t5_table_budget)


@dataclass(frozen=True)
class Family:
    """One row of the table: a model family, how to recognise it, and what its captions may hold.

    Attributes:
        name: the ``--model`` choice (and the name ``seams`` maps strategy classes to).
        title: for messages.
        tokenizer: how captions are read; ``None`` for a refused family.
        default_length: the budget when the training arguments leave ``tokenizer.length_option`` unset
            (``None`` for CLIP: 75 tokens).
        scripts: sd-scripts training scripts (stems) tested with ``CollageDataset``.
        refused_scripts: script stem -> why it stops at start-up although the family is supported.
        refused: why the whole family stops at start-up (empty when supported).
        group: the family whose tokenize strategy it shares (its own name for most): the adapter
            sees the group, ``refine`` picks the row.
        options: training options only this family's scripts accept; any of them names the family.
        hints: options shared with other families that point here when no family's ``options`` do.
        checkpoint_has: tensor-name prefixes of ``--pretrained_model_name_or_path`` that name the family
            (read from the safetensors header; after ``options``, before ``hints``).
        option_values: (option, value) pairs that name this row within its group.
        checkpoint_lacks: names this row within its group when ``--pretrained_model_name_or_path``
            is readable and has none of these tensors (sd-scripts' own test for Flux schnell).
    """

    name: str
    title: str
    tokenizer: Tokenizer | None
    default_length: int | None = None
    scripts: tuple[str, ...] = ()
    refused_scripts: Mapping[str, str] = field(default_factory=dict, hash=False)
    refused: str = ""
    group: str = ""
    options: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()
    checkpoint_has: tuple[str, ...] = ()
    option_values: tuple[tuple[str, object], ...] = ()
    checkpoint_lacks: tuple[str, ...] = ()

    @property
    def base(self) -> str:
        """The group this row belongs to (``flux`` for Chroma and Flux schnell)."""
        return self.group or self.name

    def budget(self, length: int | None = None) -> TokenBudget:
        """The caption budget for ``length`` (the value of ``tokenizer.length_option``; ``None``: default).

        Raises:
            CollageConfigError: a refused family, or a length the tokenizer does not accept.
        """
        if self.tokenizer is None:
            raise CollageConfigError(refusal_message(self.name, self.refused))
        return self.tokenizer.make_budget(length if length is not None else self.default_length)

    def budget_for(self, values: Mapping[str, Any]) -> TokenBudget:
        """The budget the training arguments ``values`` give this family."""
        length = values.get(self.tokenizer.length_option) if self.tokenizer is not None else None
        return self.budget(length if isinstance(length, int) and not isinstance(length, bool) else None)


_T5_HINTS = ("t5xxl", "clip_l", "apply_t5_attn_mask", "t5xxl_max_token_length", "ae")
_NOT_MODELLED = "text encoder has a caption budget collage_ext does not model"

#: Every family, supported first. Recognition: ``options`` (exclusive) anywhere in the table, then
#: ``checkpoint_has``, then ``hints`` in table order, then ``DEFAULT``; within a group, variants in
#: table order, then the base.
FAMILIES: tuple[Family, ...] = (
    Family(
        "sd",
        "Stable Diffusion 1.x / 2.x",
        CLIP,
        scripts=("train_network",),
        hints=("v2",),
        checkpoint_has=("cond_stage_model.",),
    ),
    Family("sdxl", "SDXL", CLIP, scripts=("sdxl_train_network", "sdxl_train"), checkpoint_has=("conditioner.",)),
    Family(
        "sd3",
        "Stable Diffusion 3",
        T5,
        256,
        scripts=("sd3_train_network",),
        refused_scripts={
            "sd3_train": "the full SD3 fine-tune (which sets its tokenizers only after the "
            "dataset is built) is not tested with collage frames; use "
            "sd3_train_network.py (LoRA)"
        },
        options=(
            "clip_g",
            "apply_lg_attn_mask",
            "clip_g_dropout_rate",
            "clip_l_dropout_rate",
            "t5_dropout_rate",
            "enable_scaled_pos_embed",
            "pos_emb_random_crop_rate",
            "training_shift",
            "save_t5xxl",
            "train_t5xxl",
            "use_t5xxl_cache_only",
            "t5xxl_device",
            "t5xxl_dtype",
        ),
        checkpoint_has=("joint_blocks.",),
    ),
    Family(
        "flux",
        "FLUX.1 dev",
        T5,
        512,
        scripts=("flux_train_network", "flux_train"),
        options=(
            "model_type",
            "guidance_scale",
            "split_mode",
            "double_blocks_to_swap",
            "single_blocks_to_swap",
            "controlnet_model_name_or_path",
        ),
        hints=_T5_HINTS,
        checkpoint_has=("double_blocks.", "single_transformer_blocks."),
    ),
    Family("chroma", "Chroma", T5, 512, group="flux", option_values=(("model_type", "chroma"),)),
    Family(
        "flux-schnell",
        "FLUX.1 schnell",
        T5,
        256,
        group="flux",
        checkpoint_lacks=("guidance_in.in_layer.bias", "time_text_embed.guidance_embedder.linear_1.bias"),
    ),
    Family(
        "lumina",
        "Lumina",
        None,
        scripts=("lumina_train_network", "lumina_train"),
        refused=f"Lumina's Gemma2 {_NOT_MODELLED}",
        options=("gemma2", "gemma2_max_token_length", "system_prompt"),
    ),
    Family(
        "anima",
        "Anima",
        None,
        scripts=("anima_train_network", "anima_train"),
        refused=f"Anima's Qwen3 {_NOT_MODELLED}",
        options=("qwen3", "qwen3_max_token_length", "llm_adapter_path"),
    ),
    Family(
        "hunyuan_image",
        "HunyuanImage",
        None,
        scripts=("hunyuan_image_train_network",),
        refused="HunyuanImage's Qwen2.5-VL + byT5 text encoders have caption budgets collage_ext does not model",
        options=("byt5", "fp8_vl"),
    ),
)

#: The family when nothing in the arguments names one (CLIP; SD 1.x and SDXL share its budget).
DEFAULT = "sdxl"

BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}

#: ``--model`` choices: ``auto`` and every supported family.
MODEL_CHOICES: tuple[str, ...] = ("auto", *(f.name for f in FAMILIES if f.tokenizer is not None))


def supported_scripts() -> tuple[str, ...]:
    """Every training script tested with ``CollageDataset``, as ``name.py``."""
    return tuple(f"{s}.py" for f in FAMILIES if not f.refused for s in f.scripts if s not in f.refused_scripts)


def refused_scripts() -> dict[str, str]:
    """Script stem -> why it stops at start-up."""
    out = {s: f.refused for f in FAMILIES if f.refused for s in f.scripts}
    for family in FAMILIES:
        out.update(family.refused_scripts)
    return out


def refusal_message(script: str, why: str) -> str:
    """The start-up refusal, naming the script (or family), why, and what to train with instead."""
    name = BY_NAME[script].title if script in BY_NAME else f"{script}.py"
    return (
        f"collage_ext does not support {name}: {why}. Remove --dataset_class collage_ext.CollageDataset for "
        f"this run, or train with one of: {', '.join(supported_scripts())}."
    )


def by_script(script: str) -> Family | None:
    """The family a training script (stem or file name) trains, or ``None`` for a script not in the table."""
    stem = Path(script).stem
    return next((f for f in FAMILIES if stem in f.scripts or stem in f.refused_scripts), None)


def by_name(name: str) -> Family:
    """The row named ``name`` (a ``--model`` choice or a ``seams`` strategy mapping).

    Raises:
        CollageConfigError: no such family.
    """
    if name not in BY_NAME:
        raise CollageConfigError(f"unknown model family {name!r}; known: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def _set(values: Mapping[str, Any], option: str) -> bool:
    value = values.get(option)
    return value is not None and value is not False


class _Checkpoint:
    """The tensor names of ``--pretrained_model_name_or_path``, read at most once per recognition."""

    def __init__(self, path: object) -> None:
        self.path = path
        self._keys: list[str] | None = None

    @property
    def keys(self) -> list[str]:
        if self._keys is None:
            self._keys = checkpoint_keys(self.path) or []
        return self._keys


def detect(values: Mapping[str, Any]) -> tuple[Family, str]:
    """The family the training arguments ``values`` name, and why (for the log).

    Examples:
        >>> [detect(v)[0].name for v in ({"model_type": "chroma"}, {"t5xxl": "t5.safetensors"}, {"clip_g": "g"}, {})]
        ['chroma', 'flux', 'sd3', 'sdxl']
    """
    checkpoint = _Checkpoint(values.get("pretrained_model_name_or_path"))
    for family in FAMILIES:
        hit = next((o for o in family.options if _set(values, o)), None)
        if hit is not None:
            return refine(family, values, f"--{hit}", checkpoint)
    for family in FAMILIES:
        if family.checkpoint_has:
            hit = next((p for p in family.checkpoint_has if any(k.startswith(p) for k in checkpoint.keys)), None)
            if hit is not None:
                return refine(family, values, f"its checkpoint has {hit}*", checkpoint)
    for family in FAMILIES:
        hit = next((o for o in family.hints if _set(values, o)), None)
        if hit is not None:
            return refine(family, values, f"--{hit}", checkpoint)
    return by_name(DEFAULT), f"no option of another family ({by_name(DEFAULT).title} and SD 1.x read the same budget)"


def refine(
    family: Family, values: Mapping[str, Any], why: str, checkpoint: _Checkpoint | None = None
) -> tuple[Family, str]:
    """The row within ``family``'s group that the arguments name (a variant, else the group's base row)."""
    base = by_name(family.base)
    checkpoint = checkpoint if checkpoint is not None else _Checkpoint(values.get("pretrained_model_name_or_path"))
    for variant in FAMILIES:
        if variant.group != base.name:
            continue
        match = next((f"{o} = {v!r}" for o, v in variant.option_values if values.get(o) == v), None)
        if (
            match is None
            and variant.checkpoint_lacks
            and checkpoint.keys
            and not any(k in checkpoint.keys for k in variant.checkpoint_lacks)
        ):
            match = f"its checkpoint has no {variant.checkpoint_lacks[0]}"
        if match is not None:
            return variant, f"{why}, {match}"
    return base, why


def choose(values: Mapping[str, Any], model: str = "auto") -> tuple[Family, str]:
    """The family for ``--model`` (``auto``: from the training arguments), and why."""
    if model != "auto":
        return by_name(model), f"--model {model}"
    return detect(values)


def checkpoint_keys(path: object) -> list[str] | None:
    """Tensor names in a ``.safetensors`` checkpoint (or a Diffusers folder's transformer), from its header.

    Reads only the JSON header, as sd-scripts' ``analyze_checkpoint_state`` lists keys (the
    ``model.diffusion_model.`` prefix removed); ``None`` when the file cannot be read as safetensors.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        return None
    file = str(path)
    if os.path.isdir(file):
        file = os.path.join(file, "transformer", "diffusion_pytorch_model-00001-of-00003.safetensors")
    files = (
        [file.replace("00001-of-00003", f"0000{i}-of-00003") for i in (1, 2, 3)] if "00001-of-00003" in file else [file]
    )
    keys: list[str] = []
    for one in files:
        try:
            with open(one, "rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                if size > 100 * 2**20:
                    return None
                header = json.loads(handle.read(size))
        except (OSError, ValueError, struct.error):
            return None
        if not isinstance(header, dict):
            return None
        keys += [k.removeprefix("model.diffusion_model.") for k in header if k != "__metadata__"]
    return keys
