"""Offline stand-ins that let collage_ext's tests drive the REAL kohya-ss/sd-scripts code on a CPU.

sd-scripts normally downloads tokenizers from the Hugging Face hub and loads multi-GB VAEs and text
encoders. None of that is possible (or wanted) in tests, so this module generates everything
locally and deterministically:

* tiny tokenizers laid out as a ``--tokenizer_cache_dir`` (sd-scripts' own offline mechanism, both
  v0.9.1 and main), so the real tokenizer loaders / tokenize strategies load them with no patching;
* a tiny fake VAE with the interface sd-scripts' latent caching touches;
* tiny randomly initialised ``transformers`` text encoders whose vocabularies match the tokenizers,
  so the real text-encoder-output caching code runs end to end;
* ``make_args``: a Namespace from the real trainer's argument parser (real defaults);
* helpers that replicate what ``train_network.py`` does around the dataset (strategy singletons,
  ``config_util`` blueprint -> ``DatasetGroup``), for both API eras.

Nothing here touches the network. Functions that need sd-scripts import it lazily from
``sys.path`` (the tests' conftest inserts ``$SD_SCRIPTS_DIR``), so the tokenizer/model generators
can be used without a checkout.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import importlib.util
import itertools
import json
import os
import random
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Union

import numpy as np
import torch
from PIL import Image

with warnings.catch_warnings():
    # sentencepiece's SWIG extension emits DeprecationWarning ("builtin type SwigPyObject has no
    # __module__ attribute") while it is first imported (transformers imports it with the T5
    # tokenizers). Under pytest's filterwarnings=error the warning is raised inside the extension's
    # type setup, which leaves it half-initialised. So let it be imported first, here, with that
    # warning ignored (transformers' import of T5TokenizerFast below imports it).
    warnings.simplefilter("ignore", DeprecationWarning)
    import sentencepiece  # noqa: F401

from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

PathLike = Union[str, "os.PathLike[str]"]
TrainerKind = Literal["sd", "sdxl", "flux", "chroma"]

# --------------------------------------------------------------------------------------------------
# Hub ids sd-scripts asks for. `tokenizer_cache_dir/<id with "/" -> "_">` is where its loaders look
# first (main: strategy_base.TokenizeStrategy._load_tokenizer; v0.9.1: train_util.load_tokenizer and
# sdxl_train_util.load_tokenizers). test_fakes checks these against the checkout's constants.
# --------------------------------------------------------------------------------------------------
CLIP_L_ID = "openai/clip-vit-large-patch14"  # SD1 tokenizer, SDXL tokenizer1, Flux/SD3 CLIP-L
CLIP_G_ID = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"  # SDXL tokenizer2, SD3 CLIP-G
SD2_ID = "stabilityai/stable-diffusion-2"  # SD2 tokenizer (--v2)
T5_XXL_ID = "google/t5-v1_1-xxl"  # Flux/Chroma/SD3 T5 tokenizer

CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 512  # the real google/t5-v1_1-xxl tokenizer's model_max_length

# Words the tiny BPE / sentencepiece vocabularies are trained on: caption-ish words collage_ext
# tests are likely to use, so they tokenize to whole tokens. Any other text still tokenizes (CLIP
# falls back to byte-level pieces, T5 to characters or <unk>, just like the real tokenizers).
_CORPUS_TEXT = """
a an the of and with in on at to by for from is are this that photo picture image painting drawing
illustration render sketch portrait closeup close up full body upper half shot view cat cats dog
dogs kitten puppy bird horse fox rabbit animal person people woman women man men girl boy child
face hair eyes smile smiling looking viewer sitting standing walking running lying holding wearing
dress shirt jacket hat glasses red green blue yellow orange purple pink black white gray brown gold
silver dark light bright colorful background simple detailed outdoors indoors street city house
room window table chair bed tree trees flower flowers grass forest mountain river lake sea beach
sky cloud clouds sun moon night day sunset snow rain water car road bridge collage grid panel
panels layout left right top bottom middle center first second third fourth tile tiles frame border
pair group two three four many sks ohwx token style character solo masterpiece best quality high
low resolution realistic anime cartoon digital art number
"""
_CORPUS_WORDS: tuple[str, ...] = tuple(_CORPUS_TEXT.split())


def hub_dir_name(model_id: str) -> str:
    """Folder name sd-scripts derives from a hub id inside ``tokenizer_cache_dir``."""
    return model_id.replace("/", "_")


# --------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode table; CLIP's base vocabulary is built from it."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _learn_clip_bpe_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """Classic BPE learning in CLIP's symbol space (byte-unicode chars, last one suffixed ``</w>``).

    Runs until every corpus word is a single symbol, so each corpus word becomes one token. Ties are
    broken deterministically, so the vocabulary is identical on every run.
    """
    byte_encoder = _bytes_to_unicode()
    state: dict[tuple[str, ...], int] = {}
    for w in words:
        chars = [byte_encoder[b] for b in w.lower().encode("utf-8")]
        sym = tuple(chars[:-1]) + (chars[-1] + "</w>",)
        state[sym] = state.get(sym, 0) + 1
    merges: list[tuple[str, str]] = []
    while True:
        pairs: dict[tuple[str, str], int] = {}
        for sym, cnt in state.items():
            for a, b in itertools.pairwise(sym):
                pairs[(a, b)] = pairs.get((a, b), 0) + cnt
        if not pairs:
            return merges
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        new_state: dict[tuple[str, ...], int] = {}
        for sym, cnt in state.items():
            out: list[str] = []
            i = 0
            while i < len(sym):
                if i + 1 < len(sym) and (sym[i], sym[i + 1]) == best:
                    out.append(sym[i] + sym[i + 1])
                    i += 2
                else:
                    out.append(sym[i])
                    i += 1
            new_state[tuple(out)] = new_state.get(tuple(out), 0) + cnt
        state = new_state


def make_clip_tokenizer(out_dir: PathLike, *, pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """Write a tiny but real ``CLIPTokenizer`` (vocab.json + merges.txt + configs) to ``out_dir``.

    Same layout as the real CLIP vocab: 256 byte symbols, the same 256 with ``</w>``, the learned
    merges, then ``<|startoftext|>`` / ``<|endoftext|>`` as the two highest ids (so CLIP's
    "argmax id = EOS" pooling shortcut still holds). Byte-level base tokens mean ANY text tokenizes
    without ``<unk>``. ``model_max_length`` is 77. ``pad_token``: ``<|endoftext|>`` like
    openai/clip-vit-large-patch14 (pad == eos, sd-scripts' "v1" branch), or ``"!"`` (id 0) like
    laion bigG / stable-diffusion-2 ("v2" branch).

    Returns the tokenizer re-loaded with ``from_pretrained(out_dir)``, i.e. exactly what sd-scripts
    gets.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = list(_bytes_to_unicode().values())
    vocab_list = base + [b + "</w>" for b in base]
    merges = _learn_clip_bpe_merges(_CORPUS_WORDS)
    seen = set(vocab_list)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            vocab_list.append(a + b)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    tok = CLIPTokenizer(  # type: ignore[no-untyped-call]
        str(out / "vocab.json"),
        str(out / "merges.txt"),
        model_max_length=CLIP_MAX_LENGTH,
        pad_token=pad_token,
    )
    tok.save_pretrained(str(out))
    loaded: CLIPTokenizer = CLIPTokenizer.from_pretrained(str(out))
    return loaded


def _t5_corpus() -> list[str]:
    """Deterministic caption-like sentences to train the tiny sentencepiece model on."""
    rng = random.Random(1234)
    words = list(_CORPUS_WORDS)
    lines = [f"a photo of a {w}." for w in words]
    lines += [f"{w.capitalize()}, {w}s and the {w}!" for w in words]
    for _ in range(400):
        n = rng.randint(3, 12)
        lines.append(" ".join(rng.choice(words) for _ in range(n)) + rng.choice([".", ",", "!", "?", ""]))
    lines.append("0 1 2 3 4 5 6 7 8 9 10 100 2024 1girl 2boys (best quality:1.2) [sks] {tag} - _ / ' \" : ;")
    lines.append("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz")
    lines.append("café naïve résumé über Ångström façade")
    return lines


# Runs in a child interpreter: trains the tiny unigram model and prints it (base64) with its pieces.
_SPIECE_TRAINER = """
import base64, io, json, sys
import sentencepiece as spm
opts = json.load(sys.stdin)
buf = io.BytesIO()
spm.SentencePieceTrainer.train(sentence_iterator=iter(opts.pop("corpus")), model_writer=buf, **opts)
sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
json.dump({"model": base64.b64encode(buf.getvalue()).decode(), "unk_id": sp.unk_id(), "eos_id": sp.eos_id(),
           "pieces": [[sp.id_to_piece(i), float(sp.get_score(i))] for i in range(sp.get_piece_size())]}, sys.stdout)
"""


def _train_spiece(vocab_size: int) -> tuple[bytes, list[tuple[str, float]], int, int]:
    """Train the T5 sentencepiece model in a child interpreter: ``(model bytes, pieces, unk id, eos id)``.

    Why a child: sentencepiece's trainer and processor objects live in its SWIG extension, whose
    module capsule is destroyed during interpreter teardown. In a pytest process that has also run
    torch (OpenMP worker threads still alive at exit), that teardown segfaulted now and then after
    every test had passed (exit 139 instead of 0). Training and reading the model in a short-lived
    child keeps every sentencepiece object out of the test process; only transformers' import of the
    module remains here.
    """
    opts = {
        "corpus": _t5_corpus(),
        "model_type": "unigram",
        "vocab_size": vocab_size,
        "hard_vocab_limit": False,
        "character_coverage": 1.0,
        "pad_id": 0,
        "eos_id": 1,
        "unk_id": 2,
        "bos_id": -1,
        "pad_piece": "<pad>",
        "eos_piece": "</s>",
        "unk_piece": "<unk>",
        "num_threads": 1,
        "minloglevel": 2,
    }
    done = subprocess.run(
        [sys.executable, "-c", _SPIECE_TRAINER],
        input=json.dumps(opts),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        msg = f"training the tiny sentencepiece model failed (exit {done.returncode}): {done.stderr[-2000:]}"
        raise RuntimeError(msg)
    got = json.loads(done.stdout)
    pieces = [(str(p), float(score)) for p, score in got["pieces"]]
    return base64.b64decode(got["model"]), pieces, int(got["unk_id"]), int(got["eos_id"])


def make_t5_tokenizer(out_dir: PathLike, *, vocab_size: int = 400) -> T5TokenizerFast:
    """Write a tiny ``T5TokenizerFast`` (tokenizer.json + spiece.model + configs) to ``out_dir``.

    A unigram sentencepiece model is trained offline on a generated corpus with T5's special ids
    (``<pad>``=0, ``</s>``=1, ``<unk>``=2, no BOS). The fast tokenizer is assembled directly with the
    ``tokenizers`` library (the same Unigram + Metaspace + "$A </s>" pipeline transformers' T5
    converter builds), because the slow->fast conversion needs ``protobuf``, which the sd-scripts env
    does not install. No ``<extra_id_*>`` sentinels (sd-scripts never uses them);
    ``model_max_length`` is 512 like google/t5-v1_1-xxl.

    Returns the tokenizer re-loaded with ``T5TokenizerFast.from_pretrained(out_dir)``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, pieces, unk_id, eos_id = _train_spiece(vocab_size)
    spiece = out / "spiece.model"
    spiece.write_bytes(model)

    backend = Tokenizer(models.Unigram(pieces, unk_id=unk_id, byte_fallback=False))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", eos_id)]
    )
    tok = T5TokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        vocab_file=str(spiece),
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=T5_MAX_LENGTH,
    )
    tok.save_pretrained(str(out))
    loaded: T5TokenizerFast = T5TokenizerFast.from_pretrained(str(out))
    return loaded


@dataclass(frozen=True)
class TinyTokenizers:
    """The generated tokenizers and the ``--tokenizer_cache_dir`` they live in.

    ``clip_l``: SD1 / SDXL tokenizer1 / Flux CLIP-L (pad == eos). ``clip_g``: SDXL tokenizer2
    (pad "!" = id 0, as sd-scripts forces anyway). ``sd2``: SD2 tokenizer (pad "!"). ``t5``: Flux /
    Chroma T5-XXL tokenizer. All CLIP ones share one vocabulary.
    """

    cache_dir: Path
    clip_l: CLIPTokenizer
    clip_g: CLIPTokenizer
    sd2: CLIPTokenizer
    t5: T5TokenizerFast


def make_tokenizer_cache(cache_dir: PathLike) -> TinyTokenizers:
    """Populate ``cache_dir`` the way sd-scripts' ``--tokenizer_cache_dir`` expects and return it.

    Layout: ``<cache_dir>/openai_clip-vit-large-patch14``,
    ``<cache_dir>/laion_CLIP-ViT-bigG-14-laion2B-39B-b160k``,
    ``<cache_dir>/stabilityai_stable-diffusion-2`` and ``<cache_dir>/google_t5-v1_1-xxl``, each a
    ``save_pretrained`` folder. Because each folder exists, sd-scripts' loaders call
    ``from_pretrained(<folder>)`` and never reach the hub (and do not re-save). Pass
    ``tokenizer_cache_dir=str(result.cache_dir)`` to ``make_args`` (in-process) or
    ``--tokenizer_cache_dir`` to a training script (subprocess).
    """
    root = Path(cache_dir)
    clip_l = make_clip_tokenizer(root / hub_dir_name(CLIP_L_ID), pad_token="<|endoftext|>")
    clip_g = make_clip_tokenizer(root / hub_dir_name(CLIP_G_ID), pad_token="!")
    sd2 = make_clip_tokenizer(root / hub_dir_name(SD2_ID), pad_token="!")
    t5 = make_t5_tokenizer(root / hub_dir_name(T5_XXL_ID))
    return TinyTokenizers(cache_dir=root, clip_l=clip_l, clip_g=clip_g, sd2=sd2, t5=t5)


_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def offline_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a training-script subprocess: ``base`` (default ``os.environ``) + hub offline.

    With ``--tokenizer_cache_dir`` pointing at ``make_tokenizer_cache``'s folder nothing needs the
    hub; the offline flags make any miss fail immediately instead of hanging on a dead network.
    """
    env = dict(os.environ if base is None else base)
    env.update(_OFFLINE_ENV)
    return env


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Within the block, any Hugging Face hub lookup raises at once instead of trying the network.

    A guard, not the mechanism: tokenizers load offline through ``tokenizer_cache_dir``. The hub
    libraries read ``HF_HUB_OFFLINE`` at import time, so besides the env vars this flips
    ``huggingface_hub.constants.HF_HUB_OFFLINE`` and ``transformers.utils.hub._is_offline_mode``
    (transformers 4.54 keeps its own copy) and restores everything on exit.
    """
    import huggingface_hub.constants as hf_constants
    import transformers.utils.hub as tf_hub

    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    saved_hf = hf_constants.HF_HUB_OFFLINE
    had_tf = hasattr(tf_hub, "_is_offline_mode")
    saved_tf: Any = getattr(tf_hub, "_is_offline_mode", None)
    os.environ.update(_OFFLINE_ENV)
    hf_constants.HF_HUB_OFFLINE = True
    if had_tf:
        tf_hub._is_offline_mode = True
    try:
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        hf_constants.HF_HUB_OFFLINE = saved_hf
        if had_tf:
            tf_hub._is_offline_mode = saved_tf


# --------------------------------------------------------------------------------------------------
# Text encoders
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Deterministic weight init without disturbing the caller's global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_clip_text_encoder(
    tokenizer: CLIPTokenizer,
    *,
    hidden_size: int = 32,
    num_layers: int = 12,
    num_heads: int = 2,
    intermediate_size: int = 64,
    with_projection: bool = False,
    projection_dim: int | None = None,
    hidden_act: str = "quick_gelu",
    seed: int = 0,
) -> CLIPTextModel | CLIPTextModelWithProjection:
    """A randomly initialised tiny CLIP text tower matching ``tokenizer`` (vocab, 77 positions, ids).

    Real ``transformers`` classes, so sd-scripts' encoding code runs unchanged. SDXL reads
    ``hidden_states[11]`` of encoder 1, hence the default 12 layers (like ViT-L).
    """
    config = CLIPTextConfig(  # type: ignore[no-untyped-call]
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=projection_dim if projection_dim is not None else hidden_size,
        hidden_act=hidden_act,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with _seeded(seed):
        model = CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)
    return model.eval()


def make_t5_encoder(
    tokenizer: T5TokenizerFast,
    *,
    d_model: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    d_kv: int = 16,
    d_ff: int = 64,
    seed: int = 2,
) -> T5EncoderModel:
    """A randomly initialised tiny T5 v1.1-style encoder (gated-gelu) matching ``tokenizer``.

    Flux's encoding calls ``t5(ids, mask, return_dict=False, output_hidden_states=True)`` and reads
    ``encoder.block[0].layer[0].SelfAttention.q.weight.dtype``; both exist on the real class.
    """
    config = T5Config(  # type: ignore[no-untyped-call]
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=num_layers,
        num_heads=num_heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    with _seeded(seed):
        model = T5EncoderModel(config)
    return model.eval()


# Hidden sizes of the fakes (real model sizes in comments). Distinct numbers make mix-ups visible.
SDXL_TE1_HIDDEN = 32  # real CLIP ViT-L: 768
SDXL_TE2_HIDDEN = 48  # real CLIP ViT-bigG: 1280 (projection_dim 1280)
FLUX_CLIP_L_HIDDEN = 32  # real: 768 (pooled)
FLUX_T5_D_MODEL = 40  # real T5-XXL: 4096


def make_sdxl_text_encoders(toks: TinyTokenizers) -> tuple[CLIPTextModel, CLIPTextModelWithProjection]:
    """(text_encoder1, text_encoder2) for SDXL caching.

    Shapes sd-scripts produces per sample (real sizes in brackets):
    ``hidden_state1`` (77, 32 [768]) = TE1 ``hidden_states[11]``; ``hidden_state2`` (77, 48 [1280])
    = TE2 ``hidden_states[-2]``; ``pool2`` (48 [1280]) = ``text_projection`` of TE2's last hidden
    state at the first EOS (``_pool_workaround``). With ``--max_token_length`` 150/225 the sequence
    becomes 152/227. main: pass ``[te1, te2, te2]`` to ``new_cache_text_encoder_outputs`` (the
    third is the "unwrapped" TE2, as ``get_models_for_text_encoding`` does); v0.9.1: ``[te1, te2]``
    to ``cache_text_encoder_outputs``.
    """
    te1 = make_clip_text_encoder(toks.clip_l, hidden_size=SDXL_TE1_HIDDEN, num_layers=12, seed=0)
    te2 = make_clip_text_encoder(
        toks.clip_g,
        hidden_size=SDXL_TE2_HIDDEN,
        num_layers=4,
        num_heads=4,
        intermediate_size=96,
        with_projection=True,
        projection_dim=SDXL_TE2_HIDDEN,
        hidden_act="gelu",
        seed=1,
    )
    assert isinstance(te1, CLIPTextModel) and isinstance(te2, CLIPTextModelWithProjection)
    return te1, te2


def make_flux_text_encoders(toks: TinyTokenizers) -> tuple[CLIPTextModel, T5EncoderModel]:
    """(clip_l, t5xxl) for Flux caching (main only).

    Per-sample cache entries (real sizes in brackets): ``l_pooled`` (32 [768]) = CLIP-L
    ``pooler_output``; ``t5_out`` (L, 40 [4096]) with L = ``t5xxl_max_token_length`` (512 dev,
    256 schnell); ``txt_ids`` (L, 3) zeros; ``t5_attn_mask`` (L,). For Chroma use
    ``library.flux_utils.dummy_clip_l()`` instead of CLIP-L: its ``l_pooled`` is zeros (77, 1).
    """
    clip_l = make_clip_text_encoder(toks.clip_l, hidden_size=FLUX_CLIP_L_HIDDEN, num_layers=2, seed=3)
    assert isinstance(clip_l, CLIPTextModel)
    t5 = make_t5_encoder(toks.t5, d_model=FLUX_T5_D_MODEL, seed=4)
    return clip_l, t5


# --------------------------------------------------------------------------------------------------
# VAE
# --------------------------------------------------------------------------------------------------
class _LatentDist:
    """Stands in for diffusers' ``DiagonalGaussianDistribution`` (zero variance: deterministic)."""

    def __init__(self, mean: torch.Tensor) -> None:
        self.mean = mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.mean

    def mode(self) -> torch.Tensor:
        return self.mean


@dataclass
class _EncoderOutput:
    """Stands in for diffusers' ``AutoencoderKLOutput``."""

    latent_dist: _LatentDist


class FakeVAE(torch.nn.Module):
    """Deterministic tiny "VAE" encoder: 8x8 average pool, then a fixed 1x1 conv 3 -> C channels.

    Why this shape of fake: sd-scripts' latent caching (main ``strategy_sd`` / ``strategy_flux`` ->
    ``strategy_base._default_cache_batch_latents``; v0.9.1 ``train_util.cache_batch_latents``) only
    uses ``vae.device``, ``vae.dtype`` and ``vae.encode(x)`` on a (B, 3, H, W) tensor in [-1, 1],
    plus ``.to()/.requires_grad_()/.eval()`` from the trainers. The output (B, C, H/8, W/8) depends
    on the pixels (so flipped latents differ from unflipped ones, and tests can check which image a
    latent came from) and is identical across runs.

    ``diffusers_style=True`` (SD/SDXL, C=4): ``encode(x).latent_dist.sample()`` like diffusers'
    ``AutoencoderKL``. ``diffusers_style=False`` (Flux/Chroma, C=16): ``encode(x)`` returns the
    tensor, like sd-scripts' own Flux ``AutoEncoder``. ``num_encoded`` counts images encoded.
    """

    def __init__(self, latent_channels: int = 4, *, diffusers_style: bool = True) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.diffusers_style = diffusers_style
        self.proj = torch.nn.Conv2d(3, latent_channels, kernel_size=1)
        with torch.no_grad():
            ch = torch.arange(latent_channels, dtype=torch.float32)
            rgb = torch.arange(3, dtype=torch.float32)
            weight = torch.cos(ch[:, None] * 1.7 + rgb[None, :] * 0.9)  # fixed, full-rank mixing
            self.proj.weight.copy_(weight[:, :, None, None])
            assert self.proj.bias is not None
            self.proj.bias.copy_(0.01 * ch)
        self.num_encoded = 0

    @property
    def device(self) -> torch.device:
        return self.proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.proj.weight.dtype

    def encode(self, x: torch.Tensor) -> _EncoderOutput | torch.Tensor:
        assert x.ndim == 4 and x.shape[1] == 3, f"expected (B, 3, H, W), got {tuple(x.shape)}"
        assert x.shape[2] % 8 == 0 and x.shape[3] % 8 == 0, f"H and W must be multiples of 8: {tuple(x.shape)}"
        self.num_encoded += x.shape[0]
        z = self.proj(torch.nn.functional.avg_pool2d(x.to(self.dtype), kernel_size=8))
        return _EncoderOutput(_LatentDist(z)) if self.diffusers_style else z

    def forward(self, x: torch.Tensor) -> _EncoderOutput | torch.Tensor:
        return self.encode(x)


def make_sdxl_vae() -> FakeVAE:
    """Fake SD/SDXL VAE: ``encode(x).latent_dist.sample()`` -> (B, 4, H/8, W/8)."""
    return FakeVAE(4, diffusers_style=True)


def make_flux_vae() -> FakeVAE:
    """Fake Flux/Chroma AE: ``encode(x)`` -> (B, 16, H/8, W/8)."""
    return FakeVAE(16, diffusers_style=False)


@dataclass
class SingleProcessAccelerator:
    """The part of ``accelerate.Accelerator`` that sd-scripts' caching methods touch, single process.

    ``DatasetGroup.new_cache_latents`` / ``new_cache_text_encoder_outputs`` (main) read
    ``num_processes``, ``process_index``, ``device`` and call ``wait_for_everyone()``; the trainers'
    TE caching wraps it in ``autocast()`` and uses ``unwrap_model``. Avoids creating accelerate's
    process-global state in the test process.
    """

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    num_processes: int = 1
    process_index: int = 0

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    def wait_for_everyone(self) -> None:
        return None

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def unwrap_model(self, model: Any) -> Any:
        return model


# --------------------------------------------------------------------------------------------------
# sd-scripts glue (imports the checkout lazily)
# --------------------------------------------------------------------------------------------------
def import_sd(name: str) -> ModuleType:
    """Import an sd-scripts module (``library.train_util``, ``sdxl_train_network``, ...) from sys.path.

    Warnings are ignored during the import: sd-scripts has invalid escape sequences in docstrings
    (a DeprecationWarning at compile time, which becomes a SyntaxError under the project's
    ``filterwarnings = error`` since PYTHONDONTWRITEBYTECODE=1 means it is compiled every run), and
    its imports of torch/diffusers/transformers emit their own deprecation noise.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def is_strategy_era() -> bool:
    """True for sd-scripts with ``library/strategy_base.py`` (main / sd3 branch), False for v0.9.1."""
    return importlib.util.find_spec("library.strategy_base") is not None


_TRAINER_MODULES: dict[str, tuple[str, str]] = {
    "sd": ("train_network", "NetworkTrainer"),
    "sdxl": ("sdxl_train_network", "SdxlNetworkTrainer"),
    "flux": ("flux_train_network", "FluxNetworkTrainer"),
    "chroma": ("flux_train_network", "FluxNetworkTrainer"),
}


def trainer_module(kind: TrainerKind) -> ModuleType:
    """The checkout's trainer script module (``train_network``, ``sdxl_train_network``, ...)."""
    name = _TRAINER_MODULES[kind][0]
    if name == "flux_train_network" and importlib.util.find_spec(name) is None:
        raise ModuleNotFoundError(
            "flux_train_network.py is not in this sd-scripts checkout (Flux/Chroma are main-only)"
        )
    return import_sd(name)


def make_trainer(kind: TrainerKind) -> Any:
    """A real trainer object (``SdxlNetworkTrainer()`` ...), used for its strategy/tokenizer getters."""
    return getattr(trainer_module(kind), _TRAINER_MODULES[kind][1])()


def make_args(
    kind: TrainerKind = "sdxl",
    argv: Sequence[str] = (),
    *,
    prepare: bool = True,
    strict: bool = True,
    **overrides: Any,
) -> argparse.Namespace:
    """Training args as the real trainer script would parse them, with overrides.

    The parser is the checkout's own ``<trainer>.setup_parser()`` (``train_network`` for "sd",
    ``sdxl_train_network`` for "sdxl", ``flux_train_network`` for "flux"/"chroma"), which is built
    from ``train_util.add_sd_models_arguments / add_dataset_arguments / add_training_arguments``,
    ``config_util.add_config_arguments`` etc., so every default is sd-scripts' real default.

    ``argv`` is parsed like a command line (argparse type conversion applies). ``overrides`` are
    then set verbatim as attributes; with ``strict`` an unknown name raises ``KeyError`` (typo
    guard; pass ``strict=False`` to add custom keys, as ``--config_file`` TOML would). "chroma"
    prepends ``--model_type chroma --apply_t5_attn_mask``. With ``prepare`` (default) the trainer's
    ``train_util.prepare_dataset_args(args, True)`` runs last, turning ``resolution`` into a (W, H)
    tuple; a tuple/int ``resolution`` override is accepted and re-stringified first.
    """
    parser = trainer_module(kind).setup_parser()
    full_argv = (["--model_type", "chroma", "--apply_t5_attn_mask"] if kind == "chroma" else []) + list(argv)
    args: argparse.Namespace = parser.parse_args(full_argv)
    for key, value in overrides.items():
        if strict and not hasattr(args, key):
            raise KeyError(f"{key!r} is not an argument of {kind} training in this sd-scripts checkout")
        setattr(args, key, value)
    if prepare:
        res = getattr(args, "resolution", None)
        if isinstance(res, int):
            args.resolution = str(res)
        elif isinstance(res, (tuple, list)):
            args.resolution = ",".join(str(int(r)) for r in res)
        train_util = import_sd("library.train_util")
        train_util.prepare_dataset_args(args, True)
    return args


def make_flux_checkpoint_stub(path: PathLike, *, schnell: bool = False) -> Path:
    """A BFL-format ``.safetensors`` holding only the keys ``flux_utils.analyze_checkpoint_state`` reads.

    ``FluxNetworkTrainer.get_tokenize_strategy`` inspects ``--pretrained_model_name_or_path`` to
    choose dev (T5 length 512) vs schnell (256) before anything else; this stub lets that real code
    run. It is NOT loadable as a model.
    """
    from safetensors.torch import save_file

    keys = ["double_blocks.0.img_attn.proj.bias", "single_blocks.0.modulation.lin.bias"]
    if not schnell:
        keys.append("guidance_in.in_layer.bias")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.zeros(1) for k in keys}, str(out))
    return out


@contextlib.contextmanager
def fresh_strategies() -> Iterator[None]:
    """Run the block with all sd-scripts strategy singletons cleared; restore them afterwards.

    main keeps the current Tokenize / TextEncoding / LatentsCaching / TextEncoderOutputsCaching
    strategy in class attributes ``_strategy`` and ``set_strategy`` raises if one is already set,
    so every test that sets strategies must start from a clean slate. Also clears ``_strategy``
    that a caller may have set on a subclass. No-op on v0.9.1 (no strategies).
    """
    if not is_strategy_era():
        yield
        return
    strategy_base = import_sd("library.strategy_base")
    roots = [
        strategy_base.TokenizeStrategy,
        strategy_base.TextEncodingStrategy,
        strategy_base.LatentsCachingStrategy,
        strategy_base.TextEncoderOutputsCachingStrategy,
    ]

    def all_classes() -> list[type]:
        seen: list[type] = []
        stack = list(roots)
        while stack:
            cls = stack.pop()
            if cls not in seen:
                seen.append(cls)
                stack.extend(cls.__subclasses__())
        return seen

    saved = {cls: cls.__dict__["_strategy"] for cls in all_classes() if "_strategy" in cls.__dict__}

    def clear() -> None:
        for cls in all_classes():
            if cls in roots:
                cls._strategy = None  # type: ignore[attr-defined]
            elif "_strategy" in cls.__dict__:
                delattr(cls, "_strategy")

    clear()
    try:
        yield
    finally:
        clear()
        for cls, value in saved.items():
            cls._strategy = value  # type: ignore[attr-defined]


@contextlib.contextmanager
def preserve_global_rng() -> Iterator[None]:
    """Restore the global ``random`` / ``numpy.random`` / torch CPU RNG states after the block.

    sd-scripts itself uses and reseeds the global RNGs (``config_util`` draws the dataset seed with
    ``random.randint``, ``shuffle_buckets`` calls ``random.seed``, ``__getitem__`` flips with
    ``random.random()``). That is upstream behaviour, not collage_ext's; this keeps it from leaking
    into other tests (and satisfies tests/conftest.py's global-RNG guard).
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)


def set_pre_dataset_strategies(trainer: Any, args: argparse.Namespace) -> None:
    """main: what ``NetworkTrainer.train`` does before building the dataset.

    Sets ``trainer.get_tokenize_strategy(args)`` (which loads the tokenizers via
    ``args.tokenizer_cache_dir``) and ``trainer.get_latents_caching_strategy(args)`` as the global
    strategies, in that order. The latents strategy must exist before the dataset is built
    (``DreamBoothDataset`` reads image sizes from existing cache file names).
    """
    strategy_base = import_sd("library.strategy_base")
    strategy_base.TokenizeStrategy.set_strategy(trainer.get_tokenize_strategy(args))
    strategy_base.LatentsCachingStrategy.set_strategy(trainer.get_latents_caching_strategy(args))


def set_post_dataset_strategies(trainer: Any, args: argparse.Namespace, dataset_group: Any) -> None:
    """main: what ``NetworkTrainer.train`` does after the dataset exists and before TE caching.

    Calls ``trainer.assert_extra_args(args, group, None)`` (sets e.g. Flux's ``train_clip_l`` and
    enables ``cache_text_encoder_outputs`` when only ``..._to_disk`` is given), then sets
    ``get_text_encoding_strategy`` and, if not None, ``get_text_encoder_outputs_caching_strategy``.
    Call ``dataset_group.set_current_strategies()`` afterwards before ``__getitem__``.
    """
    strategy_base = import_sd("library.strategy_base")
    trainer.assert_extra_args(args, dataset_group, None)
    strategy_base.TextEncodingStrategy.set_strategy(trainer.get_text_encoding_strategy(args))
    te_caching = trainer.get_text_encoder_outputs_caching_strategy(args)
    if te_caching is not None:
        strategy_base.TextEncoderOutputsCachingStrategy.set_strategy(te_caching)


def build_dataset_group(
    args: argparse.Namespace,
    *,
    tokenizer: Any = None,
    user_config: Mapping[str, Any] | None = None,
) -> Any:
    """The training ``DatasetGroup`` exactly as ``train_network.py`` builds it without ``--dataset_class``.

    ``user_config``: a dataset config dict (as ``--dataset_config`` TOML would load); default is
    ``args.dataset_config`` if set, else the DreamBooth layout of ``args.train_data_dir`` /
    ``args.reg_data_dir`` (or ``in_json`` fine-tuning). Goes through the real ``ConfigSanitizer``,
    ``BlueprintGenerator`` and ``generate_dataset_group_by_blueprint``. ``tokenizer``: v0.9.1 only
    (a CLIPTokenizer or the SDXL pair from ``trainer.load_tokenizer(args)``); main tokenizes through
    the global TokenizeStrategy. main's validation group (only with ``validation_split``) is dropped.
    """
    config_util = import_sd("library.config_util")
    if user_config is None:
        if args.dataset_config is not None:
            user_config = config_util.load_user_config(args.dataset_config)
        elif args.in_json is None:
            user_config = {
                "datasets": [
                    {
                        "subsets": config_util.generate_dreambooth_subsets_config_by_subdirs(
                            args.train_data_dir, args.reg_data_dir
                        )
                    }
                ]
            }
        else:
            user_config = {
                "datasets": [{"subsets": [{"image_dir": args.train_data_dir, "metadata_file": args.in_json}]}]
            }
    generator = config_util.BlueprintGenerator(config_util.ConfigSanitizer(True, True, args.masked_loss, True))
    if is_strategy_era():
        if tokenizer is not None:
            raise ValueError("main builds datasets without a tokenizer; set the TokenizeStrategy instead")
        blueprint = generator.generate(dict(user_config), args)
        train_group, _val_group = config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)
        return train_group
    if tokenizer is None:
        raise ValueError("v0.9.1 datasets need the tokenizer(s): trainer.load_tokenizer(args)")
    blueprint = generator.generate(dict(user_config), args, tokenizer=tokenizer)
    return config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)


# --------------------------------------------------------------------------------------------------
# Dataset files
# --------------------------------------------------------------------------------------------------
def make_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic RGB test image: a gradient whose colour and direction depend on ``seed``."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 216, size=3)
    ramp = (xx / max(width - 1, 1)) * (seed % 2 * 2 - 1) + (yy / max(height - 1, 1)) * 0.5
    img = np.clip(base[None, None, :] + 60.0 * ramp[..., None] * np.array([1.0, -0.5, 0.25]), 0, 255)
    return Image.fromarray(img.astype(np.uint8), "RGB")


def write_dreambooth_dir(
    train_data_dir: PathLike,
    *,
    subdir: str = "10_cat",
    sizes: Sequence[tuple[int, int]] = ((128, 128), (192, 128), (128, 192)),
    captions: Sequence[str] | None = None,
    caption_extension: str = ".txt",
    seed: int = 0,
) -> Path:
    """Write ``<train_data_dir>/<subdir>/img_XX.png`` (+ caption files) and return ``train_data_dir``.

    ``subdir`` follows sd-scripts' DreamBooth naming ``<repeats>_<class tokens>``. ``sizes`` are
    (W, H); captions default to ``"a photo of sks cat, number <i>"``. Pass
    ``caption_extension=".txt"`` in the args too (sd-scripts' default is ".caption").
    """
    root = Path(train_data_dir)
    folder = root / subdir
    folder.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        make_image(w, h, seed=seed + i).save(folder / f"img_{i:02d}.png")
        caption = captions[i] if captions is not None else f"a photo of sks cat, number {i}"
        (folder / f"img_{i:02d}{caption_extension}").write_text(caption, encoding="utf-8")
    return root


__all__ = [
    "CLIP_G_ID",
    "CLIP_L_ID",
    "CLIP_MAX_LENGTH",
    "FLUX_CLIP_L_HIDDEN",
    "FLUX_T5_D_MODEL",
    "SD2_ID",
    "SDXL_TE1_HIDDEN",
    "SDXL_TE2_HIDDEN",
    "T5_MAX_LENGTH",
    "T5_XXL_ID",
    "FakeVAE",
    "SingleProcessAccelerator",
    "TinyTokenizers",
    "build_dataset_group",
    "fresh_strategies",
    "hub_dir_name",
    "hub_offline",
    "import_sd",
    "is_strategy_era",
    "make_args",
    "make_clip_text_encoder",
    "make_clip_tokenizer",
    "make_flux_checkpoint_stub",
    "make_flux_text_encoders",
    "make_flux_vae",
    "make_image",
    "make_sdxl_text_encoders",
    "make_sdxl_vae",
    "make_t5_encoder",
    "make_t5_tokenizer",
    "make_tokenizer_cache",
    "make_trainer",
    "offline_env",
    "preserve_global_rng",
    "set_post_dataset_strategies",
    "set_pre_dataset_strategies",
    "trainer_module",
    "write_dreambooth_dir",
]


def load_with_dataset_class(kind: TrainerKind, args: argparse.Namespace) -> tuple[Any, Any]:
    """``train_util.load_arbitrary_dataset`` as the trainer calls it; returns (group, trainer).

    main: tokenize/latents strategies first, then the dataset, then the post-dataset strategies and
    ``set_current_strategies`` (as train_network.py does before its DataLoader). v0.9.1: the
    trainer's tokenizers are passed to the dataset class.
    """
    train_util = import_sd("library.train_util")
    trainer = make_trainer(kind)
    if is_strategy_era():
        set_pre_dataset_strategies(trainer, args)
        group = train_util.load_arbitrary_dataset(args)
        set_post_dataset_strategies(trainer, args, group)
        group.set_current_strategies()
    else:
        group = train_util.load_arbitrary_dataset(args, trainer.load_tokenizer(args))
    return group, trainer


@contextlib.contextmanager
def as_the_cli(monkeypatch: Any) -> Iterator[None]:
    """Run collage_ext's CLI code in-process as a user would: no stray ``--seed`` in ``sys.argv``, estimated
    token counts, plus the usual isolation (fresh strategies, no hub, sd-scripts' global RNG contained)."""
    monkeypatch.setattr(sys, "argv", ["sdxl_train_network.py"])
    monkeypatch.setenv("COLLAGE_EXT_NO_TOKENIZER", "1")
    with preserve_global_rng(), fresh_strategies(), hub_offline():
        yield
