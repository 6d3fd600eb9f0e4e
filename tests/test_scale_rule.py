"""Issue 18: the scale rule in every configuration users run (pinned as rules, not benchmark numbers).

* fixed frames (no bucketing, or ``collage_frame_size``): shape classes only, portraits side by side
  at full height, landscapes stacked at full width, a bounded centred crop (``collage_max_crop``) that
  never cuts into a crop box, sources that cannot keep the rule alone, grids only when listed;
* size-aware grouping: no frame smaller than its members' own buckets (``max_bucket_reso``,
  ``bucket_no_upscale``); a small image with no partner of its size trains alone;
* frames per epoch do not depend on the seed.
"""

from __future__ import annotations

import random

import pytest

from collage_ext.core.config import CollageConfig
from collage_ext.core.types import Box, Size
from collage_ext.geometry.buckets import Buckets
from collage_ext.geometry.layout import is_line_layout, line_plan
from collage_ext.geometry.shapes import area_tolerance
from collage_ext.pixels.fit import cell_fit
from collage_ext.plan.collage import Collage, Source
from collage_ext.plan.framestats import alone_images, frame_note, frame_stats
from collage_ext.plan.pool import Pool

RES = Size(1024, 1024)
NO_BUCKETS = Buckets.from_params(RES, {})
ASPECTS = [(2, 3), (3, 4), (9, 16), (4, 5), (3, 2), (4, 3), (16, 9), (1, 1)]


def photos(n: int, seed: int = 0) -> list[tuple[int, int]]:
    """Sizes of ``n`` photos of common aspects at 300-1536 px (long side), some jittered by up to 3 %."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        w, h = rng.choice(ASPECTS)
        long_side = rng.choice((300, 480, 640, 1024, 1152, 1344, 1536))
        aspect = w / h * (1 + rng.uniform(-0.03, 0.03))
        out.append((long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side))
    return out


def pool_of(
    sizes: list[tuple[int, int]],
    buckets: Buckets = NO_BUCKETS,
    *,
    crops: dict[int, Box] | None = None,
    repeats: int = 1,
    seed: int = 7,
    **options: object,
) -> Pool:
    sources = [
        Source(f"img{i:03d}", f"/data/img{i:03d}.png", Size(w, h), crop=(crops or {}).get(i))
        for i, (w, h) in enumerate(sizes)
    ]
    return Pool(
        "0/0:photos",
        sources,
        CollageConfig(**options),
        RES,
        seed=seed,  # type: ignore[arg-type]
        repeats=[repeats] * len(sizes),
        buckets=buckets,
    )


def frames(pool: Pool, epoch: int = 1) -> list[tuple[list[Source], object]]:
    collage = Collage(pool.config, pool.frame, shaped=pool.lines, max_crop=pool.max_crop)
    out = []
    for slot, group in enumerate(pool.collage_groups(epoch)):
        sources = [pool.sources[i] for i in group]
        out.append((sources, collage.make_params(sources, seed=pool.seed, epoch=epoch, frame=pool.slot_frame(slot))))
    return out


def orientation(size: Size) -> int:
    return (size.width > size.height * 1.1) - (size.height > size.width * 1.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fixed_frame_keeps_the_rule_within_shape_classes(seed: int) -> None:
    """enable_bucket = false, no collage key: every collaged source spans >= 0.95 of the 1024 frame,
    portraits stand side by side, landscapes are stacked, no frame mixes them; fill >= 0.85."""
    pool = pool_of(photos(60, seed), repeats=2)
    assert pool.fixed and pool.shapes is not None
    fills = []
    for sources, params in frames(pool):
        layout = params.layout  # type: ignore[attr-defined]
        stats = frame_stats(layout, sources, pool.config.fit_mode)
        assert layout.frame == RES and min(stats.spans) >= 0.95, (layout, [s.size for s in sources])
        kinds = {orientation(s.size) for s in sources}
        assert len(kinds) == 1
        assert is_line_layout(layout.name)
        kind = kinds.pop()
        if kind < 0:
            assert layout.name.startswith("1x")  # portraits side by side
        elif kind > 0:
            assert layout.name.endswith("x1")  # landscapes stacked
        fills.append(stats.fill)
    assert fills and sum(fills) / len(fills) >= 0.85


def test_fixed_frame_crop_is_bounded_and_centred() -> None:
    """Two 2:3 portraits in a square frame: each loses 25 % of its width (<= collage_max_crop), centred;
    with collage_max_crop = 0.2 they keep 0.2 and are padded above and below instead, spanning < 0.95,
    so they train alone."""
    pool = pool_of([(1000, 1500)] * 2)
    [(sources, params)] = frames(pool)
    layout = params.layout  # type: ignore[attr-defined]
    assert layout.fit == "cover" and layout.name == "1x2"
    for cell, index in zip(layout.cells, layout.order):
        box = cell_fit(sources[index].size, cell.size, "cover").src_box
        kept = box.width / sources[index].size.width
        assert abs(kept - 0.75) < 0.01 and abs(box.left - (1000 - box.width) / 2) <= 1 and cell.height == 1024
    tight = pool_of([(1000, 1500)] * 2, max_crop=0.2)
    assert tight.structure.single_repeats == (1, 1) and alone_images(tight) == {0: "span", 1: "span"}
    cells, cropped = line_plan("1x2", [Size(1000, 1500)] * 2, RES, CollageConfig(), [0.2, 0.2])
    assert cropped and all(abs(c.width / c.height - 2 / 3 * 0.8) < 0.01 for c in cells)


def test_crop_never_cuts_into_a_crop_box() -> None:
    """A source with a crop box is never cut further: a 2:3 box cannot stand beside a 2:3 partner in a
    square frame (the partner would lose half), so it trains alone; a 1:2 box pairs, its partner takes
    the whole cut, and its cell has the box's aspect."""
    crops = {0: Box(100, 0, 1100, 1500), 1: Box(0, 0, 750, 1500)}
    pool = pool_of([(1200, 1500), (1000, 1500), (1000, 1500), (1000, 1500)], crops=crops)
    assert pool.structure.single_repeats[0] == 1 and alone_images(pool)[0] == "span"
    assert pool.structure.single_repeats[1:] in ((0, 0, 1), (0, 1, 0), (1, 0, 0))
    seen = 0
    for sources, params in frames(pool):
        layout = params.layout  # type: ignore[attr-defined]
        for cell, index in zip(layout.cells, layout.order):
            source = sources[index]
            if source.crop is not None:
                box = cell_fit(source.size, cell.size, layout.fit or "contain", source.crop).src_box
                assert box.width * box.height >= source.crop.width * source.crop.height * 0.995
                seen += 1
        assert min(frame_stats(layout, sources, "contain").spans) >= 0.95


def test_squares_in_a_square_frame_train_alone_and_grids_only_when_listed() -> None:
    """Squares cannot span a square frame beside a partner (half of each would be cut): alone, as sd-scripts
    trains them. Listing 2x2 gives grids (knowingly at half size)."""
    pool = pool_of([(1024, 1024)] * 4)
    assert pool.structure.single_repeats == (1, 1, 1, 1) and set(alone_images(pool).values()) == {"span"}
    assert any("train alone" in n for n in frame_note(pool, NO_BUCKETS))
    grids = pool_of([(1024, 1024)] * 4, layouts=("2x2",), min_images=4)
    [(sources, params)] = frames(grids)
    assert params.layout.name == "2x2"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "params",
    [
        {"enable_bucket": True},
        {"enable_bucket": True, "max_bucket_reso": 2048},
        {"enable_bucket": True, "bucket_no_upscale": True},
    ],
)
def test_no_frame_is_smaller_than_its_members_buckets(params: dict[str, object]) -> None:
    """Every collage frame is at least the bucket each member gets alone in plain sd-scripts (within the
    bucket set's own spread), whatever max_bucket_reso and bucket_no_upscale say."""
    buckets = Buckets.from_params(RES, params)
    pool = pool_of(photos(80, 3), buckets, repeats=2)
    shapes = pool.shapes
    assert shapes is not None
    seen = 0
    for epoch in (1, 2):
        for sources, p in frames(pool, epoch):
            (fw, fh), _ = buckets.select(p.layout.frame)  # type: ignore[attr-defined]
            own = max((lambda r: r[0] * r[1])(buckets.select(s.size)[0]) for s in sources)
            assert fw * fh >= area_tolerance(buckets) * own, (p.layout.frame, [s.size for s in sources])  # type: ignore[attr-defined]
            seen += 1
    assert seen


def test_one_small_image_does_not_shrink_large_frames() -> None:
    """bucket_no_upscale: a 333x500 portrait among 1024x1536 ones used to set the whole class's frame
    (640x448); now the large ones share full-size frames and the small one trains alone at its own bucket."""
    buckets = Buckets.from_params(RES, {"enable_bucket": True, "bucket_no_upscale": True})
    pool = pool_of([(1024, 1536)] * 4 + [(333, 500)], buckets)
    assert {pool.frame_for(g).area >= 0.9 * RES.area for g in pool.collage_groups(1)} == {True}
    assert pool.structure.single_repeats == (0, 0, 0, 0, 1) and alone_images(pool) == {4: "area"}
    three_small = pool_of([(1024, 1536)] * 4 + [(333, 500)] * 2, buckets)
    assert sum(three_small.structure.single_repeats) == 0  # two small ones pair with each other


@pytest.mark.parametrize("params", [{}, {"enable_bucket": True}, {"enable_bucket": True, "bucket_no_upscale": True}])
def test_frames_per_epoch_do_not_depend_on_the_seed(params: dict[str, object]) -> None:
    """The run's sample count is the same for every seed (sd-scripts counts steps once), in dynamic
    and static mode, also with collage_rate < 1 (collage_min_span = 0 keeps the old random populations)."""
    options = {k: v for k, v in params.items() if k == "min_span"}
    buckets = Buckets.from_params(RES, {k: v for k, v in params.items() if k != "min_span"})
    sizes = photos(50, 5)
    for rate in (1.0, 0.5):
        pools = [pool_of(sizes, buckets, repeats=3, seed=seed, rate=rate, **options) for seed in range(8)]
        assert len({p.structure.frames_per_epoch for p in pools}) == 1
        assert len({len(p.static_groups()) for p in pools}) == 1


def test_start_up_line_when_a_forced_grid_breaks_the_rule() -> None:
    """The training log's one line (framestats.rule_warning): silent when every frame keeps the rule, a
    warning naming the images when a listed grid puts them at half size."""
    from collage_ext.plan.framestats import rule_warning
    from collage_ext.plan.subsets import PlannedSubset

    def frames_of(pool: Pool) -> PlannedSubset:
        return PlannedSubset(pool, Collage(pool.config, pool.frame, shaped=pool.lines, max_crop=pool.max_crop))

    keeping = pool_of([(1000, 1500)] * 4)
    assert rule_warning(frames_of(keeping), NO_BUCKETS, "dynamic") is None
    grids = pool_of([(1024, 1024)] * 4, layouts=("2x2",), min_images=4)
    line = rule_warning(frames_of(grids), NO_BUCKETS, "dynamic")
    assert line is not None and "4 images span less than collage_min_span" in line and "img000" in line
    assert rule_warning(frames_of(grids), NO_BUCKETS, "static") is not None
