"""bmaltais kohya_ss GUI users: the README's preview command works with the GUI's own training TOML.

The GUI writes the training arguments it knows into ``<output_dir>/config_lora-<date>-<time>.toml``
(empty values left out, so no ``dataset_class``: that one travels in *Additional parameters*, which the
GUI appends to the command line after ``--config_file``) and starts the trainer with
``--config_file`` pointing at it. The preview must accept that file as it is, together with the
dataset TOML, and show what training shows: the GUI file's ``seed`` and caching switches count.
"""

from __future__ import annotations

import json
from pathlib import Path

from collage_ext.cli import main
from test_cli import frame_files, write_images, write_toml


def write_gui_config(path: Path, dataset_toml: Path, output_dir: Path, **extra: object) -> Path:
    """A training TOML shaped like the GUI's ``config_lora-*.toml`` (keys as the LoRA tab writes them)."""
    values: dict[str, object] = {
        "bucket_no_upscale": True,
        "bucket_reso_steps": 64,
        "caption_extension": ".txt",
        "clip_skip": 1,
        "dataset_config": dataset_toml.resolve().as_posix(),
        "enable_bucket": True,
        "epoch": 10,
        "gradient_accumulation_steps": 1,
        "learning_rate": 0.0001,
        "logging_dir": (output_dir / "log").as_posix(),
        "lr_scheduler": "cosine",
        "max_bucket_reso": 2048,
        "max_data_loader_n_workers": 0,
        "max_train_steps": 1600,
        "min_bucket_reso": 256,
        "mixed_precision": "bf16",
        "network_alpha": 16,
        "network_dim": 32,
        "network_module": "networks.lora",
        "optimizer_type": "AdamW8bit",
        "output_dir": output_dir.as_posix(),
        "output_name": "my_lora",
        "pretrained_model_name_or_path": "/models/illustrious.safetensors",
        "resolution": "1024,1024",
        "save_every_n_epochs": 1,
        "save_model_as": "safetensors",
        "sdpa": True,
        "seed": 1234,
        "train_batch_size": 1,
    }
    values.update(extra)
    lines = []
    for key, value in values.items():
        text = ("true" if value else "false") if isinstance(value, bool) else json.dumps(value)
        lines.append(f"{key} = {text}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def summary(out: Path) -> dict[str, object]:
    """The preview manifest's summary."""
    result: dict[str, object] = json.loads((out / "manifest.json").read_text("utf-8"))["summary"]
    return result


def test_preview_with_the_gui_training_toml_and_the_dataset_toml(tmp_path: Path) -> None:
    """``collage-ext preview dataset.toml --config config_lora-….toml``: the GUI file's seed/buckets, same frames."""
    dataset = write_toml(tmp_path / "dataset.toml", write_images(tmp_path / "img"))
    (tmp_path / "outputs").mkdir()
    gui = write_gui_config(tmp_path / "outputs" / "config_lora-20260101-120000.toml", dataset, tmp_path / "outputs")
    both, only_gui, plain = tmp_path / "both", tmp_path / "only_gui", tmp_path / "plain"
    assert main(["preview", str(dataset), "--config", str(gui), "--out", str(both)]) == 0
    assert main(["preview", "--config", str(gui), "--out", str(only_gui)]) == 0  # dataset_config from the GUI file
    # The same run typed as a command line: the GUI file's seed and bucket settings shape the frames.
    assert (
        main(
            [
                "preview",
                str(dataset),
                "--out",
                str(plain),
                "--",
                "--seed",
                "1234",
                "--resolution",
                "1024,1024",
                "--enable_bucket",
                "--bucket_no_upscale",
                "--min_bucket_reso",
                "256",
                "--max_bucket_reso",
                "2048",
                "--bucket_reso_steps",
                "64",
            ]
        )
        == 0
    )
    assert summary(both)["seed"] == summary(only_gui)["seed"] == 1234
    assert summary(both)["mode"] == "dynamic"
    frames = [p.name for p in frame_files(both)]
    assert frames and frames == [p.name for p in frame_files(only_gui)] == [p.name for p in frame_files(plain)]
    for name in frames:
        assert (both / "frames" / name).read_bytes() == (plain / "frames" / name).read_bytes(), name


def test_gui_caching_switches_choose_static_mode(tmp_path: Path) -> None:
    """Caching ticked in the GUI (``cache_latents = true`` in its TOML) gives static frames, as in training."""
    dataset = write_toml(tmp_path / "dataset.toml", write_images(tmp_path / "img"))
    gui = write_gui_config(
        tmp_path / "config_lora.toml", dataset, tmp_path / "outputs", cache_latents=True, cache_latents_to_disk=True
    )
    out = tmp_path / "p"
    assert main(["preview", str(dataset), "--config", str(gui), "--out", str(out)]) == 0
    assert summary(out)["mode"] == "static"
    assert frame_files(out) and all(p.stem.startswith("collage_") for p in frame_files(out))


def test_check_warns_when_the_training_arguments_have_no_dataset_class(tmp_path: Path, capsys: object) -> None:
    """Issue 19: a GUI TOML without dataset_class trains plain images; check says so and how to fix it."""
    dataset = write_toml(tmp_path / "dataset.toml", write_images(tmp_path / "img"))
    gui = write_gui_config(tmp_path / "config_lora.toml", dataset, tmp_path / "outputs")

    def codes(*extra: str) -> list[str]:
        capsys.readouterr()  # type: ignore[attr-defined]
        assert main(["check", "--config", str(gui), "--json", *extra]) in (0, 1)
        report = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
        return [f["code"] for f in report["findings"]]

    assert "no_dataset_class" in codes()
    assert "no_dataset_class" not in codes("--", "--dataset_class", "collage_ext.CollageDataset")
    assert "no_dataset_class" in codes("--", "--dataset_class", "library.train_util.DreamBoothDataset")
    capsys.readouterr()  # type: ignore[attr-defined]
    assert main(["check", str(dataset), "--json"]) in (0, 1)  # no training arguments given: nothing to say
    assert "no_dataset_class" not in capsys.readouterr().out  # type: ignore[attr-defined]
