"""Dataset TOMLs, good and bad, with the verdict of sd-scripts' ``ConfigSanitizer`` on each release.

Used by tests/test_schema.py (collage_ext's torch-free schema gives these verdicts) and by
tests/sdscripts/test_schema_agrees.py (sd-scripts' own sanitizer gives them too, and ``collage-ext
check`` exits 2 on exactly the refused ones), so the verdicts below are checked against the real
code on main and v0.9.1 in CI.

``{img}`` is a folder with images, ``{meta}`` a fine-tuning metadata JSON for it.
Verdicts: ``ok`` (both releases accept), ``bad`` (both refuse), ``main`` (main accepts, v0.9.1
refuses). ``masked`` is the verdict with ``--masked_loss`` (sd-scripts then also allows ControlNet
datasets) when it differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    name: str
    text: str
    verdict: str
    masked: str | None = None

    def render(self, img: str, meta: str) -> str:
        """The TOML text with the folder and metadata paths filled in."""
        return self.text.replace("{img}", img).replace("{meta}", meta)

    def expect(self, flavour: str, masked_loss: bool) -> bool:
        """True when sd-scripts accepts the file on ``flavour`` ("main" / "v0.9.1")."""
        verdict = self.masked if masked_loss and self.masked is not None else self.verdict
        return verdict == "ok" or (verdict == "main" and flavour == "main")


SUB = '[[datasets]]\nresolution = 1024\n\n  [[datasets.subsets]]\n  image_dir = "{img}"\n'

CASES: tuple[Case, ...] = (
    # -- accepted ------------------------------------------------------------------------------------
    Case("minimal", SUB, "ok"),
    Case(
        "general_caption_keys",
        '[general]\ncaption_extension = ".txt"\nkeep_tokens = 1\nshuffle_caption = true\n\n' + SUB,
        "ok",
    ),
    Case("resolution_pair", SUB.replace("resolution = 1024", "resolution = [832, 1216]"), "ok"),
    Case(
        "buckets",
        SUB.replace(
            "resolution = 1024",
            "resolution = 1024\nenable_bucket = true\nmin_bucket_reso = 256\n"
            "max_bucket_reso = 2048\nbucket_reso_steps = 64\nbucket_no_upscale = false",
        ),
        "ok",
    ),
    Case(
        "collage_keys_everywhere",
        '[general]\ncollage_caption_merge = "tags"\n\n[[datasets]]\nresolution = 1024\n'
        'collage_rate = 0.5\n\n  [[datasets.subsets]]\n  image_dir = "{img}"\n  collage_layouts = ["auto"]\n',
        "ok",
    ),
    Case(
        "reg_subset",
        SUB + '  num_repeats = 2\n\n  [[datasets.subsets]]\n  image_dir = "{img}/../reg"\n'
        '  is_reg = true\n  class_tokens = "person"\n',
        "ok",
    ),
    Case("dropout_int_zero", SUB + "  caption_dropout_rate = 0\n", "ok"),
    Case("num_repeats_bool", SUB + "  num_repeats = true\n", "ok"),
    Case("face_crop_floats", SUB + "  face_crop_aug_range = [0.4, 0.8]\n", "ok"),
    Case("token_warmup", SUB + "  token_warmup_min = 1\n  token_warmup_step = 0.5\n", "ok"),
    Case(
        "network_multiplier_float",
        SUB.replace("resolution = 1024", "resolution = 1024\nnetwork_multiplier = 1.0"),
        "ok",
    ),
    Case(
        "subset_keys_at_dataset",
        SUB.replace(
            "resolution = 1024", 'resolution = 1024\nkeep_tokens = 1\ncaption_extension = ".txt"\nclass_tokens = "sks"'
        ),
        "ok",
    ),
    Case(
        "finetuning",
        '[[datasets]]\nresolution = 1024\n\n  [[datasets.subsets]]\n  image_dir = "{img}"\n'
        '  metadata_file = "{meta}"\n',
        "ok",
    ),
    Case(
        "db_and_ft_datasets",
        SUB + "\n[[datasets]]\nresolution = 512\n\n  [[datasets.subsets]]\n"
        '  metadata_file = "{meta}"\n  image_dir = "{img}"\n',
        "ok",
    ),
    Case("alpha_mask", SUB + "  alpha_mask = true\n", "ok"),
    Case("empty_general", "[general]\n\n" + SUB, "ok"),
    Case(
        "caption_text_keys",
        SUB + '  caption_prefix = "a, "\n  caption_suffix = ", b"\n'
        '  secondary_separator = ";;;"\n  keep_tokens_separator = "|||"\n  enable_wildcard = false\n'
        '  caption_separator = ","\n',
        "ok",
    ),
    Case("cache_info", SUB + "  cache_info = true\n", "ok"),
    Case("dropout_keys", SUB + "  caption_tag_dropout_rate = 0.1\n  caption_dropout_every_n_epochs = 2\n", "ok"),
    Case("flip_color_crop", SUB + "  flip_aug = true\n  color_aug = false\n  random_crop = false\n", "ok"),
    Case("empty_file", "# nothing yet\n", "ok"),
    Case("batch_size_general", "[general]\nbatch_size = 2\n\n" + SUB, "ok"),
    # -- accepted by main only -----------------------------------------------------------------------
    Case(
        "validation_split",
        SUB.replace("resolution = 1024", "resolution = 1024\nvalidation_split = 0.1\nvalidation_seed = 1"),
        "main",
    ),
    Case("resize_interpolation", SUB + '  resize_interpolation = "lanczos"\n', "main"),
    Case("custom_attributes", SUB + "  custom_attributes = { diff_output_preservation = false }\n", "main"),
    Case("validation_split_general", "[general]\nvalidation_split = 0.2\n\n" + SUB, "main"),
    # -- refused -------------------------------------------------------------------------------------
    Case("num_repeat_typo", SUB + "  num_repeat = 3\n", "bad"),
    Case("subset_typo", '[[datasets]]\nresolution = 1024\n\n  [[datasets.subset]]\n  image_dir = "{img}"\n', "bad"),
    Case(
        "training_toml_flat",
        'pretrained_model_name_or_path = "model.safetensors"\noutput_dir = "out"\n'
        'network_module = "networks.lora"\nmax_train_steps = 1600\ndataset_config = "dataset.toml"\n',
        "bad",
    ),
    Case(
        "training_toml_sections",
        '[model_arguments]\npretrained_model_name_or_path = "m.safetensors"\n\n'
        '[training_arguments]\noutput_dir = "out"\nlearning_rate = 1e-4\n',
        "bad",
    ),
    Case("batch_size_in_subset", SUB + "  batch_size = 2\n", "bad"),
    Case("image_dir_in_general", '[general]\nimage_dir = "{img}"\n\n' + SUB, "bad"),
    Case("missing_image_dir", "[[datasets]]\nresolution = 1024\n\n  [[datasets.subsets]]\n  num_repeats = 2\n", "bad"),
    Case("resolution_string", SUB.replace("resolution = 1024", 'resolution = "1024,1024"'), "bad"),
    Case("resolution_one_element", SUB.replace("resolution = 1024", "resolution = [1024]"), "bad"),
    Case("validation_split_int", SUB.replace("resolution = 1024", "resolution = 1024\nvalidation_split = 0"), "bad"),
    Case(
        "network_multiplier_int", SUB.replace("resolution = 1024", "resolution = 1024\nnetwork_multiplier = 1"), "bad"
    ),
    Case("keep_tokens_string", SUB + '  keep_tokens = "1"\n', "bad"),
    Case("enable_bucket_string", SUB.replace("resolution = 1024", 'resolution = 1024\nenable_bucket = "true"'), "bad"),
    Case("datasets_single_table", "[datasets]\nresolution = 1024\n", "bad"),
    Case(
        "subsets_single_table",
        '[[datasets]]\nresolution = 1024\n\n  [datasets.subsets]\n  image_dir = "{img}"\n',
        "bad",
    ),
    Case("mixed_db_ft", SUB + '\n  [[datasets.subsets]]\n  metadata_file = "{meta}"\n  image_dir = "{img}"\n', "bad"),
    Case("is_reg_at_dataset", SUB.replace("resolution = 1024", "resolution = 1024\nis_reg = true"), "bad"),
    Case(
        "class_tokens_in_ft_subset",
        "[[datasets]]\nresolution = 1024\n\n  [[datasets.subsets]]\n"
        '  metadata_file = "{meta}"\n  image_dir = "{img}"\n  class_tokens = "sks"\n',
        "bad",
    ),
    Case(
        "caption_extension_in_ft_subset",
        "[[datasets]]\nresolution = 1024\n\n  [[datasets.subsets]]\n"
        '  metadata_file = "{meta}"\n  image_dir = "{img}"\n  caption_extension = ".txt"\n',
        "bad",
    ),
    Case(
        "no_subsets_with_caption_extension",
        '[[datasets]]\nresolution = 1024\ncaption_extension = ".txt"\n',
        "bad",
        masked="ok",
    ),
    Case("no_subsets_with_class_tokens", '[[datasets]]\nresolution = 1024\nclass_tokens = "sks"\n', "bad"),
    Case("general_typo", '[generall]\ncaption_extension = ".txt"\n\n' + SUB, "bad"),
    Case("face_crop_ints", SUB + "  face_crop_aug_range = [1, 2]\n", "bad"),
    Case("conditioning_data_dir", SUB + '  conditioning_data_dir = "{img}"\n', "bad", masked="ok"),
    Case("keep_tokens_float", SUB + "  keep_tokens = 1.5\n", "bad"),
    Case("seed_in_general", "[general]\nseed = 42\n\n" + SUB, "bad"),
    Case("dropout_string", SUB + '  caption_dropout_rate = "0.1"\n', "bad"),
    Case("resolution_in_subset", SUB + "  resolution = 512\n", "bad"),
    Case("metadata_in_general", '[general]\nmetadata_file = "{meta}"\n\n' + SUB, "bad"),
    Case("dataset_typo_top", "[[dataset]]\nresolution = 1024\n", "bad"),
    Case("caption_extention_spelling", SUB + '  caption_extention = ".txt"\n', "bad"),
    Case("custom_attributes_not_table", SUB + '  custom_attributes = "x"\n', "bad"),
)


def make_corpus_data(root: Path) -> tuple[str, str]:
    """Two small captioned images (and a regularisation folder) plus fine-tuning metadata; returns (img, meta)."""
    from PIL import Image

    img, reg = root / "img", root / "reg"
    for folder in (img, reg):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.new("RGB", (96, 128), (40 * i, 90, 140)).save(folder / f"a{i}.png")
            (folder / f"a{i}.txt").write_text(f"sks, tag{i}", encoding="utf-8")
    meta = root / "meta.json"
    meta.write_text(json.dumps({f"a{i}.png": {"caption": f"sks, tag{i}"} for i in range(2)}), encoding="utf-8")
    return img.as_posix(), meta.as_posix()
