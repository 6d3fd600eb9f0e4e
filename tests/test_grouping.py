"""Grouping: exact coverage, constant frame count, epoch variety, determinism across processes."""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collage_ext.core.config import CollageConfig
from collage_ext.core.types import Size
from collage_ext.geometry.grouping import Record, group_instances, pool_structure, static_variants

FRAME = Size(1024, 1024)
SIZES = [Size(832, 1216), Size(1216, 832), Size(1024, 1024), Size(2000, 1500), Size(300, 300)]


def make_records(n: int, seed: int = 0, repeats: tuple[int, ...] = (1, 2, 3)) -> list[Record]:
    """Records with mixed orientations, some too small for collages, mixed repeats."""
    rng = random.Random(seed)
    return [Record(f"dir/img{i:03d}.png", rng.choice(SIZES), rng.choice(repeats)) for i in range(n)]


def coverage(structure, groups) -> collections.Counter:  # type: ignore[no-untyped-def]
    """Times each record appears in an epoch (collage frames + single samples)."""
    seen: collections.Counter = collections.Counter(i for g in groups for i in g)
    for i, single in enumerate(structure.single_repeats):
        seen[i] += single
    return seen


@settings(derandomize=True, deadline=None, max_examples=60)
@given(
    n=st.integers(1, 60),
    rate=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    seed=st.integers(0, 50),
    max_images=st.integers(2, 4),
)
def test_exact_coverage_constant_frames(n: int, rate: float, seed: int, max_images: int) -> None:
    """Every image appears exactly num_repeats times per epoch, and frames/epoch never changes."""
    records = make_records(n, seed)
    cfg = CollageConfig(min_span=0.0, rate=rate, max_images=max_images)
    structure = pool_structure(records, FRAME, cfg, seed=seed, pool_key="p")
    frame_counts = set()
    for epoch in range(4):
        groups = group_instances(structure, records, seed=seed, epoch=epoch, pool_key="p")
        assert coverage(structure, groups) == collections.Counter({i: r.num_repeats for i, r in enumerate(records)})
        assert all(2 <= len(g) <= max_images for g in groups)
        frame_counts.add(len(groups) + sum(structure.single_repeats))
    assert len(frame_counts) == 1


def test_partners_change_every_epoch() -> None:
    """Dynamic mode: most frames differ between consecutive epochs."""
    records = make_records(40, repeats=(1,))
    structure = pool_structure(records, FRAME, CollageConfig(min_span=0.0, rate=1.0), seed=3, pool_key="p")
    e0 = {frozenset(g) for g in group_instances(structure, records, seed=3, epoch=0, pool_key="p")}
    e1 = {frozenset(g) for g in group_instances(structure, records, seed=3, epoch=1, pool_key="p")}
    assert len(e0 & e1) < len(e0) // 4


def test_rate_zero_is_plain_sd_scripts() -> None:
    """collage_rate 0: every repeat is a single sample."""
    records = make_records(10)
    structure = pool_structure(records, FRAME, CollageConfig(rate=0.0), seed=0, pool_key="p")
    assert structure.sizes == () and list(structure.single_repeats) == [r.num_repeats for r in records]


def test_rate_one_leaves_no_needless_singles() -> None:
    """collage_rate 1 with odd counts: leftovers join a larger frame instead of staying single."""
    records = [Record(f"{i}.png", Size(1024, 1024)) for i in range(7)]
    structure = pool_structure(records, FRAME, CollageConfig(min_span=0.0, rate=1.0), seed=0, pool_key="p")
    assert sum(structure.single_repeats) == 0 and sum(structure.sizes) == 7


def test_rate_is_share_of_frames() -> None:
    """collage_rate is (about) the share of frames that are collages."""
    records = [Record(f"{i}.png", Size(1024, 1024)) for i in range(2000)]
    structure = pool_structure(
        records, FRAME, CollageConfig(min_span=0.0, rate=0.5, max_images=2), seed=0, pool_key="p"
    )
    share = len(structure.sizes) / structure.frames_per_epoch
    assert abs(share - 0.5) < 0.01


def test_small_images_stay_single() -> None:
    """Images too small for any cell under max_upscale are never grouped."""
    records = [Record("tiny.png", Size(100, 100), 3)] + [Record(f"{i}.png", Size(1024, 1024)) for i in range(6)]
    structure = pool_structure(records, FRAME, CollageConfig(min_span=0.0, rate=1.0), seed=0, pool_key="p")
    assert structure.single_repeats[0] == 3 and 0 not in structure.collage_instances


def test_no_image_twice_in_a_frame() -> None:
    """Repeats of one image land in different frames when the pool allows it."""
    records = [Record(f"{i}.png", Size(1024, 1024), 5) for i in range(4)]
    structure = pool_structure(
        records, FRAME, CollageConfig(min_span=0.0, rate=1.0, max_images=2, layouts=("1x2",)), seed=1, pool_key="p"
    )
    for epoch in range(5):
        groups = group_instances(structure, records, seed=1, epoch=epoch, pool_key="p")
        assert all(len(set(g)) == len(g) for g in groups)


def test_portraits_pair_with_portraits() -> None:
    """Orientation-aware grouping: pairs are mostly same-orientation."""
    records = [Record(f"{i}.png", Size(832, 1216) if i % 2 else Size(1216, 832)) for i in range(40)]
    cfg = CollageConfig(min_span=0.0, rate=1.0, max_images=2)
    structure = pool_structure(records, FRAME, cfg, seed=0, pool_key="p")
    groups = group_instances(structure, records, seed=0, epoch=0, pool_key="p")
    mixed = sum(len({records[i].size for i in g}) > 1 for g in groups)
    assert mixed <= 1


def test_static_variants_cover_repeats_exactly() -> None:
    """Static mode: repeats spread over variants; the union covers every repeat exactly once."""
    records = make_records(30, seed=2, repeats=(3, 4))
    cfg = CollageConfig(min_span=0.0, rate=1.0)
    structure = pool_structure(records, FRAME, cfg, seed=2, pool_key="p")
    plans = static_variants(structure, records, seed=2, variants=3, pool_key="p")
    assert len(plans) == 3
    union = coverage(structure, [g for plan in plans for g in plan])
    assert union == collections.Counter({i: r.num_repeats for i, r in enumerate(records)})


@pytest.mark.parametrize("hash_seed", ["0", "123"])
def test_plan_identical_across_processes(hash_seed: str) -> None:
    """Another process with another PYTHONHASHSEED rebuilds the same plan."""
    code = (
        "import json\n"
        "from collage_ext.core.config import CollageConfig\n"
        "from collage_ext.geometry.grouping import Record, pool_structure, group_instances\n"
        "from collage_ext.core.types import Size\n"
        "r=[Record(f'{i}.png', Size(800+i*7, 1000), 1+i%3) for i in range(25)]\n"
        "s=pool_structure(r, Size(1024,1024), CollageConfig(min_span=0.0, rate=0.8), seed=9, pool_key='k')\n"
        "print(json.dumps(group_instances(s, r, seed=9, epoch=4, pool_key='k')))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    records = [Record(f"{i}.png", Size(800 + i * 7, 1000), 1 + i % 3) for i in range(25)]
    structure = pool_structure(records, Size(1024, 1024), CollageConfig(min_span=0.0, rate=0.8), seed=9, pool_key="k")
    here = group_instances(structure, records, seed=9, epoch=4, pool_key="k")
    assert json.loads(out) == [list(g) for g in here]


# Plans pinned byte for byte: these digests were computed with the grouping code as it was before
# its speed-ups (lru_cache levels, one rng.choice per frame, sorted() orientation classes), so any
# optimisation that changes a plan for the same inputs fails here.
PINNED_SIZES = [
    Size(832, 1216),
    Size(1216, 832),
    Size(1024, 1024),
    Size(2000, 1500),
    Size(300, 300),
    Size(700, 700),
    Size(640, 1400),
]
PINNED_CASES = [
    (2000, 0, (1, 2, 3), {"rate": 0.7}, "b7adfe0e736d932b"),
    (2000, 1, (1,), {"rate": 1.0}, "a78c6e3d913170a8"),
    (1999, 2, (1, 5), {"rate": 1.0, "max_images": 2}, "ff46d514faf78b19"),
    (3001, 3, (2, 3), {"rate": 0.3, "min_images": 3, "max_images": 4}, "0187fe6f891dde24"),
    (1500, 4, (1, 2), {"rate": 1.0, "fit_mode": "cover", "layouts": ("2x2", "1x2", "2x1")}, "dd530a29b798866b"),
    (777, 5, (4,), {"rate": 0.9, "max_images": 3, "max_upscale": 1.0}, "576f98c22130af35"),
    (20000, 6, (1, 2, 3), {"rate": 0.8}, "2e7c0c858c66c3bd"),
]


@pytest.mark.parametrize(
    ("n", "seed", "repeats", "options", "digest"),
    PINNED_CASES,
    ids=["rate-0.7", "rate-1", "pairs-odd", "min-3", "cover-grids", "no-upscale", "20k"],
)
def test_plans_pinned(n: int, seed: int, repeats: tuple[int, ...], options: dict[str, object], digest: str) -> None:
    """Structure, three epochs of groups and three static variants equal the pinned plan."""
    import hashlib

    rng = random.Random(seed)
    records = [Record(f"d/{i:06d}.png", rng.choice(PINNED_SIZES), rng.choice(repeats)) for i in range(n)]
    structure = pool_structure(
        records, FRAME, CollageConfig(**{"min_span": 0.0, **options}), seed=seed, pool_key=f"pool{seed}"
    )  # type: ignore[arg-type]
    plan: list[object] = [
        list(structure.single_repeats),
        list(structure.collage_instances),
        list(structure.level),
        list(structure.sizes),
    ]
    for epoch in (0, 1, 7):
        plan.append(
            [list(g) for g in group_instances(structure, records, seed=seed, epoch=epoch, pool_key=f"pool{seed}")]
        )
    plan.append(
        [
            [list(g) for g in variant]
            for variant in static_variants(structure, records, seed=seed, variants=3, pool_key=f"pool{seed}")
        ]
    )
    assert hashlib.sha256(json.dumps(plan).encode()).hexdigest()[:16] == digest


def test_no_avoidable_duplicate_in_a_frame_of_a_small_pool() -> None:
    """Issue 20 item 6: 7 portraits x 3 repeats make nine pairs and one frame of three; the three used to
    hold one image twice (10 of 400 frames over 40 epochs) although a swap with a pair avoids it."""
    from collage_ext.geometry.buckets import Buckets
    from collage_ext.plan.collage import Source
    from collage_ext.plan.pool import Pool

    res = Size(1024, 1024)
    buckets = Buckets.from_params(res, {"enable_bucket": True, "max_bucket_reso": 2048})
    for sizes in ([(832, 1248)] * 7, [(832, 1248)] * 4 + [(1248, 832)] * 3):
        sources = [Source(f"k{i}", f"/x/{i}.png", Size(*s)) for i, s in enumerate(sizes)]
        pool = Pool("0/0:x", sources, CollageConfig(), res, seed=3, repeats=[3] * 7, buckets=buckets)
        assert 3 in pool.structure.sizes
        for epoch in range(1, 41):
            groups = pool.collage_groups(epoch)
            assert all(len(set(g)) == len(g) for g in groups), (epoch, groups)
            assert sorted(i for g in groups for i in g) == sorted(pool.structure.collage_instances)
