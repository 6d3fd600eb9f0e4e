"""Probe: the offline fakes in ``fakes.py`` drive the REAL sd-scripts dataset / caching code.

Runs against whichever checkout ``$SD_SCRIPTS_DIR`` names (main = strategy era, v0.9.1 =
tokenizer era); Flux/Chroma tests run on main only. conftest.py skips the module when sd-scripts
is not importable.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import numpy as np
import torch
from library import train_util

if str(Path(__file__).parent) not in sys.path:  # robust to --import-mode=importlib
    sys.path.insert(0, str(Path(__file__).parent))
import fakes

pytestmark = pytest.mark.sdscripts

MAIN = fakes.is_strategy_era()
SD_DIR = Path(os.environ["SD_SCRIPTS_DIR"]).resolve()
main_only = pytest.mark.skipif(not MAIN, reason="Flux/Chroma and the strategy API exist only on sd-scripts main")

SIZES = ((256, 256), (384, 256), (256, 384))  # (W, H) of the generated images
# Buckets sd-scripts assigns to SIZES at --resolution 256, --bucket_reso_steps 64 (W, H). 64, not
# 32: flux_train_network's assert_extra_args runs the base class check (divisible by 64) first.
BUCKETS = {"img_00": (256, 256), "img_01": (320, 192), "img_02": (192, 320)}


@pytest.fixture(scope="session")
def toks(tmp_path_factory: pytest.TempPathFactory) -> fakes.TinyTokenizers:
    return fakes.make_tokenizer_cache(tmp_path_factory.mktemp("tokenizer_cache"))


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    """Fresh strategy singletons per test; any hub access fails instead of reaching the network;
    sd-scripts' use of the global RNGs does not leak out of the test."""
    with fakes.preserve_global_rng(), fakes.fresh_strategies(), fakes.hub_offline():
        yield


def _argv(train_dir: Path, toks: fakes.TinyTokenizers, *extra: str) -> list[str]:
    return [
        "--train_data_dir", str(train_dir),
        "--resolution", "256",
        "--enable_bucket", "--min_bucket_reso", "128", "--max_bucket_reso", "512", "--bucket_reso_steps", "64",
        "--caption_extension", ".txt",
        "--tokenizer_cache_dir", str(toks.cache_dir),
        "--max_data_loader_n_workers", "0",
        "--seed", "42",
        *extra,
    ]  # fmt: skip


def _sd_modules(*names: str) -> tuple[Any, ...]:
    """``library.<name>`` modules of the checkout (imported with sd-scripts' warnings silenced)."""
    return tuple(fakes.import_sd(f"library.{n}") for n in names)


def _items_by_key(group: Any) -> dict[str, Any]:
    """``{file stem: (ImageInfo)}`` of the (single) dataset."""
    return {Path(info.absolute_path).stem: info for info in group.image_data.values()}


def _example_for(group: Any, stem: str) -> dict[str, Any]:
    """Find the ``__getitem__`` result (batch size 1) whose image is ``stem``."""
    ds = group.datasets[0]
    ds.debug_dataset = True  # makes __getitem__ return "image_keys"
    for i in range(len(group)):
        ex: dict[str, Any] = group[i]
        if Path(ex["image_keys"][0]).stem == stem:
            return ex
    raise AssertionError(f"{stem} not found in dataset")


# ---------------------------------------------------------------------------------------------------
# Tokenizers / args
# ---------------------------------------------------------------------------------------------------
def test_hub_ids_match_checkout() -> None:
    if MAIN:
        strategy_flux, strategy_sd, strategy_sdxl = _sd_modules("strategy_flux", "strategy_sd", "strategy_sdxl")
        assert strategy_sd.TOKENIZER_ID == fakes.CLIP_L_ID
        assert strategy_sd.V2_STABLE_DIFFUSION_ID == fakes.SD2_ID
        assert (strategy_sdxl.TOKENIZER1_PATH, strategy_sdxl.TOKENIZER2_PATH) == (fakes.CLIP_L_ID, fakes.CLIP_G_ID)
        assert (strategy_flux.CLIP_L_TOKENIZER_ID, strategy_flux.T5_XXL_TOKENIZER_ID) == (
            fakes.CLIP_L_ID,
            fakes.T5_XXL_ID,
        )
    else:
        (sdxl_train_util,) = _sd_modules("sdxl_train_util")
        assert (train_util.TOKENIZER_PATH, train_util.V2_STABLE_DIFFUSION_PATH) == (fakes.CLIP_L_ID, fakes.SD2_ID)
        assert (sdxl_train_util.TOKENIZER1_PATH, sdxl_train_util.TOKENIZER2_PATH) == (fakes.CLIP_L_ID, fakes.CLIP_G_ID)


def test_tiny_tokenizers(toks: fakes.TinyTokenizers) -> None:
    clip = toks.clip_l
    assert clip.model_max_length == 77
    assert (clip.bos_token, clip.eos_token, clip.pad_token) == ("<|startoftext|>", "<|endoftext|>", "<|endoftext|>")
    assert clip.eos_token_id == len(clip) - 1 and clip.bos_token_id == len(clip) - 2
    assert toks.clip_g.pad_token_id == 0 and toks.sd2.pad_token_id == 0 and len(toks.clip_g) == len(clip)
    assert clip.tokenize("a photo of sks cat") == ["a</w>", "photo</w>", "of</w>", "sks</w>", "cat</w>"]
    ids = clip("Ünïcödé 猫 🐱 zzqx!!")["input_ids"]  # byte-level fallback: never <unk>
    assert ids[0] == clip.bos_token_id and ids[-1] == clip.eos_token_id and clip.unk_token_id not in ids[1:-1]
    assert clip("a cat", padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids.shape == (
        1,
        77,
    )

    t5 = toks.t5
    assert (t5.pad_token_id, t5.eos_token_id, t5.unk_token_id, t5.model_max_length) == (0, 1, 2, 512)
    enc = t5(["a photo of a cat", ""], max_length=512, padding="max_length", truncation=True, return_tensors="pt")
    assert enc["input_ids"].shape == (2, 512)
    assert enc["input_ids"][1, 0].item() == t5.eos_token_id and enc["attention_mask"][1].sum().item() == 1
    assert t5.unk_token_id not in enc["input_ids"][0].tolist()
    assert (toks.cache_dir / fakes.hub_dir_name(fakes.T5_XXL_ID) / "spiece.model").is_file()


def test_hub_offline_guard_fails_fast() -> None:
    from transformers import CLIPTokenizer

    start = time.monotonic()
    # transformers 4.54 without protobuf reports the miss as a misleading "requires the protobuf
    # library" ImportError (raised while handling the real TypeError); with protobuf, OSError.
    with pytest.raises((OSError, ImportError)):
        CLIPTokenizer.from_pretrained("openai/clip-vit-large-patch14-does-not-exist")
    assert time.monotonic() - start < 30


def test_make_args_uses_real_parser_defaults() -> None:
    args = fakes.make_args("sdxl", ["--resolution", "128,96"], caption_extension=".txt")
    assert args.resolution == (128, 96)  # prepare_dataset_args ran
    assert args.vae_batch_size == 1 and args.max_token_length is None and args.tokenizer_cache_dir is None
    assert args.caption_extension == ".txt" and args.cache_text_encoder_outputs is False
    assert fakes.make_args("sdxl", resolution=(64, 64)).resolution == (64, 64)
    with pytest.raises(KeyError):
        fakes.make_args("sdxl", caption_extention_typo=".txt")
    assert fakes.make_args("sdxl", strict=False, collage_layouts="2x2").collage_layouts == "2x2"
    if MAIN:
        chroma = fakes.make_args("chroma")
        assert (
            chroma.model_type == "chroma"
            and chroma.apply_t5_attn_mask is True
            and chroma.t5xxl_max_token_length is None
        )


def test_tokenizer_loaders_read_cache_dir(toks: fakes.TinyTokenizers) -> None:
    before = sorted(p.name for p in toks.cache_dir.iterdir())
    n = len(toks.clip_l)
    if MAIN:
        strategy_flux, strategy_sd, strategy_sdxl = _sd_modules("strategy_flux", "strategy_sd", "strategy_sdxl")
        cache = str(toks.cache_dir)
        assert len(strategy_sd.SdTokenizeStrategy(False, None, cache).tokenizer) == n
        sd2 = strategy_sd.SdTokenizeStrategy(True, None, cache)
        assert sd2.tokenizer.pad_token_id == 0 and sd2.tokenizer.pad_token_id != sd2.tokenizer.eos_token_id
        sdxl = strategy_sdxl.SdxlTokenizeStrategy(None, cache)
        assert (len(sdxl.tokenizer1), len(sdxl.tokenizer2), sdxl.tokenizer2.pad_token_id, sdxl.max_length) == (
            n,
            n,
            0,
            77,
        )
        t1, t2 = sdxl.tokenize("a photo of sks cat")
        assert t1.shape == (1, 1, 77) and t2.shape == (1, 1, 77)
        assert sdxl.tokenize_with_weights("a (photo:1.2) of cat")[0][0].shape == (1, 1, 77)
        flux = strategy_flux.FluxTokenizeStrategy(256, cache)
        assert len(flux.t5xxl) == len(toks.t5)
        l_ids, t5_ids, mask = flux.tokenize(["a cat", "a dog in the sky"])
        assert l_ids.shape == (2, 77) and t5_ids.shape == (2, 256) and mask.shape == (2, 256)
        # the same through the trainer, as sdxl_train_network.py does with --tokenizer_cache_dir
        args = fakes.make_args("sdxl", ["--tokenizer_cache_dir", cache, "--max_token_length", "225"])
        strat = fakes.make_trainer("sdxl").get_tokenize_strategy(args)
        assert strat.tokenize("a cat")[0].shape == (1, 3, 77)
    else:
        (sdxl_train_util,) = _sd_modules("sdxl_train_util")
        args = fakes.make_args("sd", ["--tokenizer_cache_dir", str(toks.cache_dir)])
        tok = train_util.load_tokenizer(args)
        assert len(tok) == n and tok.pad_token_id == tok.eos_token_id
        args.v2 = True
        assert train_util.load_tokenizer(args).pad_token_id == 0
        sdxl_args = fakes.make_args("sdxl", ["--tokenizer_cache_dir", str(toks.cache_dir)])
        tok1, tok2 = sdxl_train_util.load_tokenizers(sdxl_args)
        assert (len(tok1), len(tok2), tok2.pad_token_id) == (n, n, 0)
        t1, t2 = fakes.make_trainer("sdxl").load_tokenizer(sdxl_args)  # what sdxl_train_network.py calls
        assert len(t1) == n and t2.pad_token_id == 0
    assert sorted(p.name for p in toks.cache_dir.iterdir()) == before  # loaded, nothing re-saved


# ---------------------------------------------------------------------------------------------------
# SDXL (both versions)
# ---------------------------------------------------------------------------------------------------
def _sdxl_group(tmp_path: Path, toks: fakes.TinyTokenizers, *extra: str) -> tuple[argparse.Namespace, Any, Any, Any]:
    """(args, trainer, group, v091 tokenizers or None), built like sdxl_train_network.py does."""
    train_dir = fakes.write_dreambooth_dir(tmp_path / "train", sizes=SIZES)
    args = fakes.make_args("sdxl", _argv(train_dir, toks, *extra))
    trainer = fakes.make_trainer("sdxl")
    if MAIN:
        fakes.set_pre_dataset_strategies(trainer, args)
        return args, trainer, fakes.build_dataset_group(args), None
    tokenizers = trainer.load_tokenizer(args)
    return args, trainer, fakes.build_dataset_group(args, tokenizer=tokenizers), tokenizers


def test_sdxl_dataset_group_and_getitem(tmp_path: Path, toks: fakes.TinyTokenizers) -> None:
    args, trainer, group, _ = _sdxl_group(tmp_path, toks)
    assert isinstance(group, train_util.DatasetGroup) and len(group.datasets) == 1
    assert isinstance(group.datasets[0], train_util.DreamBoothDataset)
    assert len(group) == 3 * 10 and group.num_train_images == 30  # "10_cat": 10 repeats
    infos = _items_by_key(group)
    assert {k: tuple(v.bucket_reso) for k, v in infos.items()} == BUCKETS
    assert infos["img_01"].caption == "a photo of sks cat, number 1"
    if MAIN:
        trainer.assert_extra_args(args, group, None)
        group.set_current_strategies()  # as train_network does before debug_dataset / DataLoader
    ex = _example_for(group, "img_01")
    assert ex["images"].shape == (1, 3, 192, 320) and ex["latents"] is None  # bucket (320, 192)
    assert float(ex["images"].min()) >= -1.0 and float(ex["images"].max()) <= 1.0
    assert ex["captions"] == ["a photo of sks cat, number 1"]
    assert ex["original_sizes_hw"].tolist() == [[256, 384]] and ex["target_sizes_hw"].tolist() == [[192, 320]]
    if MAIN:
        ids1, ids2 = ex["input_ids_list"]
        assert ex["text_encoder_outputs_list"] is None
    else:
        ids1, ids2 = ex["input_ids"], ex["input_ids2"]
        assert ex["text_encoder_outputs1_list"] is None
    assert ids1.shape == (1, 1, 77) and ids2.shape == (1, 1, 77)
    assert ids1[0, 0, 0].item() == toks.clip_l.bos_token_id
    assert toks.clip_l.decode(ids1[0, 0], skip_special_tokens=True) == "a photo of sks cat , number 1"
    assert ids2[0, 0, -1].item() == 0  # tokenizer2 pads with id 0


@pytest.mark.parametrize("to_disk", [False, True], ids=["memory", "disk"])
def test_sdxl_latent_and_text_encoder_caching(tmp_path: Path, toks: fakes.TinyTokenizers, to_disk: bool) -> None:
    extra = ["--cache_latents", "--cache_text_encoder_outputs", "--network_train_unet_only", "--lowram"]
    if to_disk:
        extra += ["--cache_latents_to_disk", "--cache_text_encoder_outputs_to_disk"]
    args, trainer, group, tokenizers = _sdxl_group(tmp_path, toks, *extra)
    image_dir = tmp_path / "train" / "10_cat"
    vae = fakes.make_sdxl_vae()
    te1, te2 = fakes.make_sdxl_text_encoders(toks)
    acc = fakes.SingleProcessAccelerator()
    assert group.is_latent_cacheable() and group.is_text_encoder_output_cacheable()

    with torch.no_grad():
        if MAIN:
            trainer.assert_extra_args(args, group, None)
            group.new_cache_latents(vae, acc)
            (strategy_base,) = _sd_modules("strategy_base")
            strategy_base.TextEncodingStrategy.set_strategy(trainer.get_text_encoding_strategy(args))
            strategy_base.TextEncoderOutputsCachingStrategy.set_strategy(
                trainer.get_text_encoder_outputs_caching_strategy(args)
            )
            # the trainer's own orchestration (--lowram: no unet/vae to move)
            trainer.cache_text_encoder_outputs_if_needed(args, acc, None, None, [te1, te2], group, torch.float32)
            group.set_current_strategies()
        else:
            trainer.assert_extra_args(args, group)
            group.cache_latents(vae, args.vae_batch_size, args.cache_latents_to_disk, acc.is_main_process)
            trainer.cache_text_encoder_outputs_if_needed(
                args, acc, None, None, tokenizers, [te1, te2], group, torch.float32
            )
    assert vae.num_encoded == 3  # one per image (no flip_aug)

    npz = sorted(p.name for p in image_dir.glob("*.npz"))
    if not to_disk:
        assert npz == []
    elif MAIN:
        assert npz == [
            "img_00_0256x0256_sdxl.npz", "img_00_te_outputs.npz",
            "img_01_0384x0256_sdxl.npz", "img_01_te_outputs.npz",
            "img_02_0256x0384_sdxl.npz", "img_02_te_outputs.npz",
        ]  # fmt: skip
    else:
        assert npz == [
            "img_00.npz", "img_00_te_outputs.npz",
            "img_01.npz", "img_01_te_outputs.npz",
            "img_02.npz", "img_02_te_outputs.npz",
        ]  # fmt: skip
    if to_disk:
        lat_npz = np.load(image_dir / ("img_01_0384x0256_sdxl.npz" if MAIN else "img_01.npz"))
        assert lat_npz["latents"].shape == (4, 192 // 8, 320 // 8)
        te_npz = np.load(image_dir / "img_01_te_outputs.npz")
        assert te_npz["hidden_state1"].shape == (77, fakes.SDXL_TE1_HIDDEN)
        assert te_npz["hidden_state2"].shape == (77, fakes.SDXL_TE2_HIDDEN)
        assert te_npz["pool2"].shape == (fakes.SDXL_TE2_HIDDEN,)

    ex = _example_for(group, "img_01")
    assert ex["images"] is None and ex["latents"].shape == (1, 4, 192 // 8, 320 // 8)
    assert ex["original_sizes_hw"].tolist() == [[256, 384]] and ex["target_sizes_hw"].tolist() == [[192, 320]]
    if MAIN:
        assert ex["input_ids_list"] is None
        h1, h2, pool2 = ex["text_encoder_outputs_list"]
    else:
        assert ex["input_ids"] is None
        h1, h2, pool2 = (
            ex["text_encoder_outputs1_list"],
            ex["text_encoder_outputs2_list"],
            ex["text_encoder_pool2_list"],
        )
    assert h1.shape == (1, 77, fakes.SDXL_TE1_HIDDEN) and h2.shape == (1, 77, fakes.SDXL_TE2_HIDDEN)
    assert pool2.shape == (1, fakes.SDXL_TE2_HIDDEN)

    # the cached latent is the fake VAE's encoding of the bucketed image (deterministic)
    with torch.no_grad():
        ref_vae = fakes.make_sdxl_vae()
        img = train_util.load_image(str(image_dir / "img_01.png"))
        info = _items_by_key(group)["img_01"]
        img, _, _ = train_util.trim_and_resize_if_required(False, img, info.bucket_reso, info.resized_size)
        out = ref_vae.encode(train_util.IMAGE_TRANSFORMS(img)[None])
        assert not isinstance(out, torch.Tensor)  # diffusers style: .latent_dist.sample()
        expected = out.latent_dist.sample()
    assert torch.allclose(ex["latents"], expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Flux / Chroma (main only)
# ---------------------------------------------------------------------------------------------------
def _flux_group(
    tmp_path: Path, toks: fakes.TinyTokenizers, kind: str, *extra: str
) -> tuple[argparse.Namespace, Any, Any]:
    train_dir = fakes.write_dreambooth_dir(tmp_path / "train", sizes=SIZES)
    argv = _argv(train_dir, toks, *extra)
    if kind == "flux":  # dev checkpoint stub: the trainer derives T5 length 512 from its keys
        argv += [
            "--pretrained_model_name_or_path",
            str(fakes.make_flux_checkpoint_stub(tmp_path / "flux1-dev.safetensors")),
        ]
    args = fakes.make_args(kind, argv)  # type: ignore[arg-type]
    trainer = fakes.make_trainer(kind)  # type: ignore[arg-type]
    fakes.set_pre_dataset_strategies(trainer, args)
    return args, trainer, fakes.build_dataset_group(args)


@main_only
@pytest.mark.parametrize("kind", ["flux", "chroma"])
def test_flux_getitem_tokenizes(tmp_path: Path, toks: fakes.TinyTokenizers, kind: str) -> None:
    args, trainer, group = _flux_group(tmp_path, toks, kind)
    fakes.set_post_dataset_strategies(trainer, args, group)
    group.set_current_strategies()
    ex = _example_for(group, "img_02")
    assert ex["images"].shape == (1, 3, 320, 192)  # bucket (192, 320)
    l_ids, t5_ids, mask = ex["input_ids_list"]
    assert l_ids.shape == (1, 77) and t5_ids.shape == (1, 512) and mask.shape == (1, 512)
    assert toks.t5.decode(t5_ids[0], skip_special_tokens=True) == "a photo of sks cat, number 2"
    assert int(mask.sum()) == int((t5_ids != 0).sum())


@main_only
@pytest.mark.parametrize("to_disk", [False, True], ids=["memory", "disk"])
@pytest.mark.parametrize("kind", ["flux", "chroma"])
def test_flux_latent_and_text_encoder_caching(
    tmp_path: Path, toks: fakes.TinyTokenizers, kind: str, to_disk: bool
) -> None:
    (flux_utils,) = _sd_modules("flux_utils")
    extra = ["--cache_latents", "--cache_text_encoder_outputs", "--network_train_unet_only", "--lowram"]
    if kind == "flux":
        extra += ["--apply_t5_attn_mask"]
    if to_disk:
        extra += ["--cache_latents_to_disk", "--cache_text_encoder_outputs_to_disk"]
    args, trainer, group = _flux_group(tmp_path, toks, kind, *extra)
    image_dir = tmp_path / "train" / "10_cat"
    vae = fakes.make_flux_vae()
    clip_l, t5 = fakes.make_flux_text_encoders(toks)
    if kind == "chroma":
        clip_l = flux_utils.dummy_clip_l()  # what flux_train_network loads for Chroma
    acc = fakes.SingleProcessAccelerator()

    with torch.no_grad():
        trainer.assert_extra_args(args, group, None)
        group.new_cache_latents(vae, acc)
        fakes.set_post_dataset_strategies(trainer, args, group)
        trainer.cache_text_encoder_outputs_if_needed(args, acc, None, None, [clip_l, t5], group, torch.float32)
        group.set_current_strategies()
    assert vae.num_encoded == 3

    npz = sorted(p.name for p in image_dir.glob("*.npz"))
    if to_disk:
        assert npz == [
            "img_00_0256x0256_flux.npz", "img_00_flux_te.npz",
            "img_01_0384x0256_flux.npz", "img_01_flux_te.npz",
            "img_02_0256x0384_flux.npz", "img_02_flux_te.npz",
        ]  # fmt: skip
        lat_npz = np.load(image_dir / "img_02_0256x0384_flux.npz")
        assert lat_npz["latents_40x24"].shape == (16, 40, 24)  # multi-resolution key latents_{h}x{w}
        te_npz = np.load(image_dir / "img_02_flux_te.npz")
        assert te_npz["t5_out"].shape == (512, fakes.FLUX_T5_D_MODEL) and te_npz["txt_ids"].shape == (512, 3)
        assert bool(te_npz["apply_t5_attn_mask"]) is True
    else:
        assert npz == []

    ex = _example_for(group, "img_02")
    assert ex["images"] is None and ex["latents"].shape == (1, 16, 320 // 8, 192 // 8)
    assert ex["input_ids_list"] is None
    l_pooled, t5_out, txt_ids, t5_mask = ex["text_encoder_outputs_list"]
    assert l_pooled.shape == ((1, 77, 1) if kind == "chroma" else (1, fakes.FLUX_CLIP_L_HIDDEN))
    if kind == "chroma":
        assert float(l_pooled.abs().sum()) == 0.0
    assert (
        t5_out.shape == (1, 512, fakes.FLUX_T5_D_MODEL) and txt_ids.shape == (1, 512, 3) and t5_mask.shape == (1, 512)
    )


# ---------------------------------------------------------------------------------------------------
# Real training scripts as subprocesses
# ---------------------------------------------------------------------------------------------------
@pytest.mark.slow  # spawns the real training script (~5 s each)
@pytest.mark.parametrize("script", ["sdxl", "chroma"])
def test_training_script_loads_local_tokenizers_offline(
    tmp_path: Path, toks: fakes.TinyTokenizers, script: str
) -> None:
    """``--tokenizer_cache_dir`` + offline env: the real script loads our tokenizers, then stops at
    "No data found" (empty --train_data_dir) with exit code 0, before any model is needed."""
    if script == "chroma" and not MAIN:
        pytest.skip("flux_train_network.py exists only on sd-scripts main")
    empty = tmp_path / "empty"
    empty.mkdir()
    cmd = [
        sys.executable,
        "sdxl_train_network.py" if script == "sdxl" else "flux_train_network.py",
        "--train_data_dir", str(empty),
        "--resolution", "128",
        "--output_dir", str(tmp_path / "out"),
        "--tokenizer_cache_dir", str(toks.cache_dir),
    ]  # fmt: skip
    if script == "chroma":
        cmd += ["--model_type", "chroma", "--apply_t5_attn_mask"]
    proc = subprocess.run(
        cmd, check=False, cwd=SD_DIR, env=fakes.offline_env(), capture_output=True, text=True, timeout=300
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert log.count("load tokenizer from cache") == 2, log[-4000:]
    assert "save Tokenizer to cache" not in log
    assert "No data found" in log
