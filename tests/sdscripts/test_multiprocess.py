"""Two accelerate processes (CPU, gloo): identical plans and len on every rank, exact coverage across ranks."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import collage_ext

pytest.importorskip("library.train_util", reason="sd-scripts' library is not importable (see conftest.py)")

import fakes
from test_collage_dataset import SIZES, dataset_toml, write_dataset

pytestmark = [pytest.mark.sdscripts, pytest.mark.slow]
ID = re.compile(r"id\d{3}")

RANK_SCRIPT = r"""
import json, random, sys
sys.path[:0] = [{tests!r}]
import fakes
from multiprocessing import Value
import torch
from accelerate import Accelerator
from library import train_util

accelerator = Accelerator(cpu=True)
rank = accelerator.process_index
assert accelerator.num_processes == 2, accelerator.state
argv = ["--dataset_config", {config!r}, "--dataset_class", "collage_ext.CollageDataset",
        "--tokenizer_cache_dir", {toks!r}, "--max_data_loader_n_workers", "{workers}"]
sys.argv = ["sdxl_train_network.py"] + argv  # no --seed: train_network draws one per process
args = fakes.make_args("sdxl", argv)
args.seed = random.Random(rank).randint(0, 2**32)  # what train_network.py does without --seed ...
from accelerate.utils import set_seed
set_seed(args.seed)  # ... before it builds the dataset
with fakes.hub_offline():
    group, _ = fakes.load_with_dataset_class("sdxl", args)
    plan = {{}}
    for epoch in (1, 2):
        group.set_current_epoch(epoch)
        plan[epoch] = sorted(c for i in range(len(group)) for c in group[i]["captions"])
    group.set_current_epoch(0)
    for d in group.datasets:  # restart epoch bookkeeping for the DataLoader pass
        d.current_epoch = 0
    epoch_value, step_value = Value("i", 0), Value("i", 0)
    collator = train_util.collator_class(epoch_value, step_value, group if {workers} == 0 else None)
    loader = torch.utils.data.DataLoader(group, batch_size=1, shuffle=True, collate_fn=collator,
                                         num_workers={workers}, persistent_workers={workers} > 0)
    loader = accelerator.prepare(loader)
    seen = {{}}
    for epoch in (1, 2):
        epoch_value.value = epoch
        seen[epoch] = [c for batch in loader for c in batch["captions"]]
json.dump({{"len": len(group), "plan": plan, "seen": seen}}, open({out!r} + f"/rank{{rank}}.json", "w"))
"""


@pytest.mark.parametrize("workers", [0, 2])
def test_two_processes_same_plan_exact_coverage(tmp_path: Path, workers: int) -> None:
    """Both ranks build the same frames (without --seed too) and together cover every image."""
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("the accelerate command is not installed in this environment")
    toks = fakes.make_tokenizer_cache(tmp_path / "tok")
    config = dataset_toml(tmp_path, write_dataset(tmp_path), general="collage_rate = 0.8")
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "rank.py"
    script.write_text(
        RANK_SCRIPT.format(
            tests=str(Path(__file__).parent),
            config=str(config),
            toks=str(toks.cache_dir),
            workers=workers,
            out=str(out),
        )
    )
    # accelerate 1.6 runs ONE process for `--cpu --num_processes 2`; `--multi_gpu` with no visible GPU
    # starts two real CPU ranks (DistributedType.MULTI_CPU, gloo), which is what we want.
    # The ranks import sd-scripts' library, and collage_ext (the dataset class) from this checkout: the
    # README runs pytest with PYTHONPATH=$PWD and no installed package, so the checkout goes on the path too.
    path = [os.environ.get("SD_SCRIPTS_DIR", ""), str(Path(collage_ext.__file__).resolve().parents[1])]
    path += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**fakes.offline_env(), "PYTHONPATH": os.pathsep.join(path), "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["len"] == ranks[1]["len"]
    assert ranks[0]["plan"] == ranks[1]["plan"]
    expected = collections.Counter({f"id{i:03d}": 2 for i in range(len(SIZES))})
    for epoch in ("1", "2"):
        plan = collections.Counter(ranks[0]["plan"][epoch])
        seen = collections.Counter(ranks[0]["seen"][epoch] + ranks[1]["seen"][epoch])
        padding = seen - plan  # accelerate's even_batches repeats a few samples to even out ranks
        assert not plan - seen and sum(padding.values()) < 2
        assert collections.Counter(i for c in plan.elements() for i in ID.findall(c)) == expected
