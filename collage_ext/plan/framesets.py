"""The run's text encoder for the CLI: which token budget captions must fit and how tokens are counted.

``check``, ``preview``, ``export`` and the studio count caption tokens with this; the adapter takes
the trainer's own tokenizer (``sdscripts/captioning.py``). Which frames a run has is planned in
``plan.project`` / ``plan.subsets`` and listed in ``plan.jobs``.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from collage_ext.captions import TokenBudget, TokenCounter, clip_budget, estimate_tokens, t5_budget

logger = logging.getLogger(__name__)

ModelName = Literal["auto", "sd", "sdxl", "flux", "chroma"]
MODELS: tuple[str, ...] = ("auto", "sd", "sdxl", "flux", "chroma")

#: Hugging Face ids of the tokenizers sd-scripts counts with (SDXL: CLIP-L is tokenizer 1).
_CLIP_ID = "openai/clip-vit-large-patch14"
_T5_ID = "google/t5-v1_1-xxl"


@dataclass(frozen=True)
class TextEncoder:
    """The text encoder whose token budget captions must fit.

    Attributes:
        model: ``sd``, ``sdxl``, ``flux`` or ``chroma``.
        budget: CLIP chunks (``--max_token_length``) or the T5 length (``--t5xxl_max_token_length``).
        counter: counts tokens (a real tokenizer when one loads offline, else ``estimate_tokens``).
        exact: True when ``counter`` is the real tokenizer.
    """

    model: str
    budget: TokenBudget
    counter: TokenCounter
    exact: bool

    @property
    def short(self) -> str:
        """E.g. ``CLIP, estimated``."""
        return f"{'CLIP' if self.budget.kind == 'clip' else 'T5'}, {'tokenizer' if self.exact else 'estimated'}"

    @property
    def label(self) -> str:
        """E.g. ``CLIP 225 tokens (estimate)``."""
        kind = "CLIP" if self.budget.kind == "clip" else "T5"
        return f"{kind} {self.budget.max_tokens} tokens ({'tokenizer' if self.exact else 'estimate'})"


def detect_model(values: dict[str, Any]) -> str:
    """Guess the model family from training arguments: Flux / Chroma options mean T5, else SDXL's CLIP.

    Examples:
        >>> detect_model({"model_type": "chroma"}), detect_model({"t5xxl": "t5.safetensors"}), detect_model({})
        ('chroma', 'flux', 'sdxl')
    """
    if values.get("model_type") in ("flux", "chroma"):
        return str(values["model_type"])
    if any(values.get(k) is not None for k in ("t5xxl", "ae", "apply_t5_attn_mask", "t5xxl_max_token_length")):
        return "flux"
    if values.get("v2") or values.get("v_parameterization"):
        return "sd"
    return "sdxl"


def text_encoder_for(values: dict[str, Any], model: str = "auto") -> TextEncoder:
    """The token budget and counter of the run's text encoder.

    Flux dev and Chroma read 512 T5 tokens unless ``t5xxl_max_token_length`` says otherwise (Flux
    schnell reads 256: set ``t5xxl_max_token_length = 256``); SD/SDXL read ``max_token_length``
    CLIP tokens (75 unless set). The real tokenizer is used when ``transformers`` is installed and
    has it locally (``tokenizer_cache_dir`` or the Hugging Face cache); nothing is downloaded.

    Raises:
        CollageConfigError: an invalid ``max_token_length`` or ``t5xxl_max_token_length``.
    """
    name = detect_model(values) if model == "auto" else model
    if name in ("flux", "chroma"):
        length = values.get("t5xxl_max_token_length")
        budget = t5_budget(int(length) if isinstance(length, int) else 512)
        tokenizer = _load_tokenizer(_T5_ID, values.get("tokenizer_cache_dir"), t5=True)
    else:
        length = values.get("max_token_length")
        budget = clip_budget(int(length) if isinstance(length, int) else None)
        tokenizer = _load_tokenizer(_CLIP_ID, values.get("tokenizer_cache_dir"), t5=False)
    if tokenizer is None:
        return TextEncoder(name, budget, estimate_tokens, False)
    return TextEncoder(name, budget, _HFCounter(tokenizer), True)


class _HFCounter:
    """Tokens of a text without BOS/EOS, with a Hugging Face tokenizer (as the adapter counts)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def _load_tokenizer(repo: str, cache_dir: object, *, t5: bool) -> Any:
    if os.environ.get("COLLAGE_EXT_NO_TOKENIZER"):
        return None
    try:
        import importlib.util

        if importlib.util.find_spec("transformers") is None:
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import transformers

            cls = transformers.T5TokenizerFast if t5 else transformers.CLIPTokenizer
            local = os.path.join(str(cache_dir), repo.replace("/", "_")) if cache_dir else None
            if local and os.path.isdir(local):
                return cls.from_pretrained(local, local_files_only=True)
            return cls.from_pretrained(repo, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: count with the estimate instead
        logger.debug(f"no local tokenizer {repo}: {type(exc).__name__}: {exc}")
        return None
