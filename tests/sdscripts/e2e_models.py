"""A randomly initialised, full-size SDXL checkpoint for the end-to-end training test.

``sdxl_train_network.py`` loads a single-file checkpoint with
``library.sdxl_model_util.load_models_from_sdxl_checkpoint``, which builds the real architectures
(sd-scripts' ``SdxlUNet2DConditionModel``, CLIP ViT-L and ViT-bigG text towers from ``transformers``
with hard-coded sizes, diffusers' ``AutoencoderKL`` from ``model_util.create_vae_diffusers_config``)
and insists that every key of the checkpoint matches. There is no "tiny SDXL" the loader would
accept, so this module builds the full-size models with random weights and writes them with
sd-scripts' own converter, ``sdxl_model_util.save_stable_diffusion_checkpoint`` (UNet under
``model.diffusion_model.``, text encoder 1 under ``conditioner.embedders.0.transformer.``, text
encoder 2 converted to the open_clip layout under ``conditioner.embedders.1.model.``, VAE converted
to the LDM layout under ``first_stage_model.``): exactly the inverse of the loader.

The models are created directly in fp16 (PyTorch's default initialisers, seeded), so the build never
holds an fp32 copy: about 7 GB on disk and ~14 GB peak RAM while safetensors serialises. Run it in a
separate process (``python e2e_models.py OUT.safetensors`` with the sd-scripts checkout on
``PYTHONPATH``) so that memory is returned to the OS before training starts.

No download: the text-encoder configs are the ones ``load_models_from_sdxl_checkpoint`` hard-codes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Bumped when the checkpoint layout or the init changes (part of the cache file name).
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = f"random_sdxl_fp16_v{CHECKPOINT_VERSION}.safetensors"


@contextlib.contextmanager
def _default_dtype_and_seed(dtype: Any, seed: int) -> Iterator[None]:
    import torch

    saved = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(saved)


def _text_encoder_configs() -> tuple[object, object]:
    """The two CLIPTextConfigs ``sdxl_model_util.load_models_from_sdxl_checkpoint`` builds (same values)."""
    from transformers import CLIPTextConfig

    common = {
        "vocab_size": 49408,
        "max_position_embeddings": 77,
        "layer_norm_eps": 1e-05,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "model_type": "clip_text_model",
    }
    te1 = CLIPTextConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        hidden_act="quick_gelu",
        projection_dim=768,
        **common,
    )
    te2 = CLIPTextConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=20,
        hidden_act="gelu",
        projection_dim=1280,
        **common,
    )
    return te1, te2


def build_sdxl_checkpoint(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a random full-size SDXL checkpoint (fp16 .safetensors) to ``path``; needs sd-scripts importable.

    Written to a temporary name and renamed, so a crashed build never leaves a truncated file behind.
    """
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from library import model_util, sdxl_model_util, sdxl_original_unet

    out = Path(path)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out}: the checkpoint must be a .safetensors file")
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg1, cfg2 = _text_encoder_configs()
    with _default_dtype_and_seed(torch.float16, seed), torch.no_grad():
        unet = sdxl_original_unet.SdxlUNet2DConditionModel()
        te1 = CLIPTextModel(cfg1)
        te2 = CLIPTextModelWithProjection(cfg2)
        vae = AutoencoderKL(**model_util.create_vae_diffusers_config())
        logit_scale = torch.tensor(4.6052, dtype=torch.float16)  # ln(100), as in open_clip checkpoints
    for model in (unet, te1, te2, vae):
        model.to(torch.float16)  # transformers/diffusers may keep some buffers in fp32
    # the temporary name keeps the .safetensors suffix: the converter picks safetensors vs torch.save by it
    tmp = out.with_name(f"{out.stem}.tmp{os.getpid()}{out.suffix}")
    metadata = {"collage_ext_test": "random-init SDXL, not a usable model", "seed": str(seed)}
    sdxl_model_util.save_stable_diffusion_checkpoint(
        str(tmp), te1, te2, unet, 0, 0, None, vae, logit_scale, metadata, save_dtype=None
    )
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="path of the .safetensors file to write")
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args(argv)
    start = time.perf_counter()
    out = build_sdxl_checkpoint(ns.output, seed=ns.seed)
    print(f"wrote {out} ({out.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
