"""Content-shaped frames: shape classes, bucket frames, the scale rule, coverage and determinism."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collage_ext.core.config import CollageConfig, split_dataset_config
from collage_ext.core.types import Layout, Rect, Size
from collage_ext.geometry.buckets import Buckets, make_bucket_resolutions
from collage_ext.geometry.layout import check_partition, choose_layout, line_cells
from collage_ext.geometry.shapes import area_tolerance
from collage_ext.plan.collage import Collage, Source
from collage_ext.plan.framestats import alone_images, epoch_stats, frame_note, frame_stats
from collage_ext.plan.pool import Pool
from collage_ext.plan.subsets import PlannedSubset
from collage_ext.sdscripts.startup import default_rate_note

RES = Size(1024, 1024)
WIDE = Buckets.from_params(RES, {"enable_bucket": True, "max_bucket_reso": 2048})
NARROW = Buckets.from_params(RES, {"enable_bucket": True})  # sd-scripts' default max_bucket_reso = 1024
ASPECTS = [(2, 3), (3, 2), (1, 1), (3, 4), (4, 3), (9, 16), (16, 9)]


def sources(sizes: list[tuple[int, int]]) -> list[Source]:
    """Sources with stable keys (no files: planning reads sizes only)."""
    return [Source(f"img{i:03d}", f"/data/img{i:03d}.png", Size(w, h)) for i, (w, h) in enumerate(sizes)]


def mixed(n: int, seed: int = 0, long_side: int = 1536) -> list[tuple[int, int]]:
    """Photos of the seven benchmark aspects at about 1.5 MP."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        w, h = rng.choice(ASPECTS)
        out.append((long_side * w // max(w, h), long_side * h // max(w, h)))
    return out


def shaped_pool(
    sizes: list[tuple[int, int]], buckets: Buckets = WIDE, repeats: list[int] | None = None, **options: object
) -> Pool:
    """A pool planned with content-shaped frames."""
    config = CollageConfig(**options)  # type: ignore[arg-type]
    return Pool("0/0:photos", sources(sizes), config, RES, seed=7, repeats=repeats or [], buckets=buckets)


def frames_of(pool: Pool) -> PlannedSubset:
    """The pool's frames, as the adapter builds them."""
    return PlannedSubset(pool, Collage(pool.config, pool.frame, shaped=pool.lines, max_crop=pool.max_crop))


# -- buckets and shape classes ---------------------------------------------------------------------


def test_bucket_set_matches_the_rule() -> None:
    """Every bucket has sides in [min, max], multiples of the steps, area at most the resolution's."""
    for w, h in make_bucket_resolutions(RES, 256, 2048, 64):
        assert 256 <= w <= 2048 and 256 <= h <= 2048 and w % 64 == 0 and h % 64 == 0 and w * h <= RES.area


def test_two_portraits_side_by_side_fill_a_4_3_bucket() -> None:
    """The issue's example: two 2:3 portraits get a ~4:3 bucket, each at >= 95 % of its height."""
    pool = shaped_pool([(832, 1248)] * 2)
    frame = pool.slot_frame(0)
    assert tuple(frame) in WIDE.resos and frame.width > frame.height
    params = frames_of(pool).params(0, 1)
    stats = frame_stats(params.layout, pool.sources, "contain")
    assert params.layout.name == "1x2" and min(stats.spans) >= 0.95 and stats.fill >= 0.93


def test_landscapes_stack_and_squares_pair() -> None:
    """Landscapes are stacked in a tall frame; squares stand side by side in a 2:1 frame."""
    pool = shaped_pool([(1248, 832)] * 2 + [(1024, 1024)] * 2)
    layouts = {frames_of(pool).params(s, 1).layout.name: pool.slot_frame(s) for s in range(2)}
    assert layouts.keys() == {"2x1", "1x2"}
    assert layouts["2x1"].height > layouts["2x1"].width and layouts["1x2"] == Size(1408, 704)


def test_orientations_never_share_a_frame() -> None:
    """Portraits with portraits, landscapes with landscapes, squares with squares, every epoch."""
    pool = shaped_pool(mixed(60), repeats=[2] * 60)
    shapes = pool.shapes
    assert shapes is not None
    for epoch in (1, 2, 3):
        for group in pool.collage_groups(epoch):
            kinds = {(s.width > s.height) - (s.width < s.height) for s in (pool.sources[i].size for i in group)}
            assert len(kinds) == 1 and len({shapes.classes[i] for i in group}) == 1


def test_small_class_joins_a_near_class_or_stays_single() -> None:
    """A lone 3:5 portrait pairs with 2:3 portraits; a lone 16:9 landscape among portraits stays single."""
    pool = shaped_pool([(600, 1000)] + [(800, 1200)] * 3 + [(1600, 900)])
    assert pool.structure.single_repeats[4] == 1 and sum(pool.structure.single_repeats) == 1
    assert sorted(pool.structure.sizes) == [2, 2]


def test_tiny_images_stay_single() -> None:
    """A source that would be magnified beyond collage_max_upscale keeps training as a single image."""
    pool = shaped_pool([(200, 300)] + [(832, 1248)] * 2)
    assert pool.structure.level[0] == 1 and pool.structure.single_repeats[0] == 1


def test_no_upscale_frames_are_their_own_buckets() -> None:
    """bucket_no_upscale: the frame keeps its smallest member's scale and is whole steps within the area."""
    buckets = Buckets.from_params(RES, {"enable_bucket": True, "bucket_no_upscale": True})
    pool = shaped_pool([(512, 768)] * 4, buckets=buckets)
    frame = pool.slot_frame(0)
    assert frame.width % 64 == 0 and frame.height % 64 == 0 and frame.area <= RES.area
    assert buckets.select(frame) == (tuple(frame), 1.0)  # sd-scripts keeps it as it is
    assert frame.height <= 768  # nothing is magnified


def test_narrow_bucket_range_is_reported() -> None:
    """max_bucket_reso = 1024 cannot hold 4:3 at full area: the log says what to set."""
    pool = shaped_pool([(832, 1248)] * 4, buckets=NARROW)
    notes = frame_note(pool, NARROW)
    assert tuple(pool.slot_frame(0)) in NARROW.resos
    assert any("max_bucket_reso = 2048" in n for n in notes)


def test_fixed_frame_when_frame_size_is_set_or_no_buckets() -> None:
    """collage_frame_size or enable_bucket = false: one fixed frame, and the note says how the rule is kept."""
    fixed = shaped_pool([(832, 1248)] * 4, frame_size=Size(1024, 1024))
    plain = shaped_pool([(832, 1248)] * 4, buckets=Buckets.from_params(RES, {}))
    for pool in (fixed, plain):
        assert not pool.shaped and {pool.frame_for(g) for g in pool.collage_groups(1)} == {RES}
        assert "only within their shape class" in frame_note(pool, None)[0]
    rule_off = shaped_pool([(832, 1248)] * 4, buckets=Buckets.from_params(RES, {}), min_span=0.0)
    assert rule_off.shapes is None and "padding is expected" in frame_note(rule_off, None)[0]


# -- the epoch plan ---------------------------------------------------------------------------------


@settings(derandomize=True, deadline=None, max_examples=40)
@given(n=st.integers(1, 50), seed=st.integers(0, 30), rate=st.sampled_from([0.5, 1.0]), max_images=st.integers(2, 4))
def test_exact_coverage_and_constant_slot_frames(n: int, seed: int, rate: float, max_images: int) -> None:
    """Every repeat lands in exactly one sample; each slot keeps its frame shape in every epoch."""
    rng = random.Random(seed)
    repeats = [rng.choice((1, 2, 3)) for _ in range(n)]
    pool = shaped_pool(mixed(n, seed), repeats=repeats, rate=rate, max_images=max_images)
    structure = pool.structure
    frames = [pool.slot_frame(s) for s in range(len(structure.sizes))]
    for epoch in (1, 2, 5):
        groups = pool.collage_groups(epoch)
        assert [len(g) for g in groups] == list(structure.sizes)
        assert [pool.frame_for(g) for g in groups] == frames  # the slot's bucket never changes
        seen = collections.Counter(i for g in groups for i in g)
        for i, single in enumerate(structure.single_repeats):
            seen[i] += single
        assert [seen[i] for i in range(n)] == repeats
    assert all(tuple(f) in WIDE.resos for f in frames)


def test_partners_change_and_plans_are_deterministic() -> None:
    """New partners per epoch; an independent pool with the same inputs plans the same frames."""
    a, b = shaped_pool(mixed(40), repeats=[2] * 40), shaped_pool(mixed(40), repeats=[2] * 40)
    assert a.collage_groups(1) != a.collage_groups(2)
    assert a.collage_groups(3) == b.collage_groups(3) and a.static_groups() == b.static_groups()


def test_static_variants_cover_every_repeat() -> None:
    """Static mode: all variants together show each image num_repeats times, frames from the bucket set."""
    repeats = [4] * 30
    pool = shaped_pool(mixed(30, 3), repeats=repeats)
    seen: collections.Counter[int] = collections.Counter()
    for _, group in pool.static_groups():
        seen.update(group)
        assert len(group) == 1 or tuple(pool.frame_for(group)) in WIDE.resos
    for i, single in enumerate(pool.structure.single_repeats):
        seen[i] += single
    assert [seen[i] for i in range(30)] == repeats


def test_benchmark_targets_on_mixed_photos() -> None:
    """Defaults with bucketing on 70 mixed photos: fill >= 0.93, >= 90 % at span >= 0.95, >= 1.8 images/frame."""
    pool = shaped_pool(mixed(70, 11))
    stats = epoch_stats(frames_of(pool), "dynamic")
    assert stats.mean_fill >= 0.93 and stats.span_share >= 0.9 and stats.images_per_frame >= 1.8
    static = epoch_stats(frames_of(pool), "static")
    assert static.mean_fill >= 0.93 and static.span_share >= 0.9


# -- geometry and statistics ------------------------------------------------------------------------


def test_line_cells_partition_and_cap_the_upscale() -> None:
    """Line cells stay inside the frame without overlap; a small source's cell shrinks to max_upscale."""
    config = CollageConfig(gutter=8)
    cells = line_cells("1x2", [Size(832, 1248), Size(300, 450)], Size(1152, 896), config)
    check_partition(Layout("1x2", Size(1152, 896), cells, (0, 1), ("", "")))
    assert cells[0].height == 896 and cells[1].height == 675  # 450 * 1.5
    stacked = line_cells("2x1", [Size(1248, 832), Size(1248, 832)], Size(896, 1152), config)
    assert [(c.width, c.height) for c in stacked] == [(896, 572)] * 2 and stacked[1].y - stacked[0].bottom == 8


def test_forced_grid_is_planned_and_its_spans_show() -> None:
    """collage_layouts = ["2x2"] keeps working with the rule on; the stats show the half-size scale."""
    config = CollageConfig(layouts=("2x2",))
    sizes = [Size(1024, 1024)] * 4
    layout = choose_layout(sizes, Size(1024, 1024), config, rng=random.Random(0))
    stats = frame_stats(layout, sources([(1024, 1024)] * 4), "contain")
    assert layout.name == "2x2" and stats.spans == (0.5,) * 4 and stats.fill == 1.0


def test_frame_stats_counts_padding() -> None:
    """Fill is the share of frame pixels showing a source; span the larger axis share."""
    layout = Layout("1x2", Size(200, 100), (Rect(0, 0, 100, 100), Rect(100, 0, 100, 100)), (0, 1), ("", ""))
    stats = frame_stats(layout, sources([(100, 100), (100, 50)]), "contain")
    assert stats.fill == pytest.approx(0.75) and stats.spans == (1.0, 0.5)


# -- defaults ---------------------------------------------------------------------------------------


def test_collage_is_on_by_default_and_reg_stays_single() -> None:
    """No collage key: training subsets get collage_rate 1, regularisation subsets 0; the log line says so."""
    data = {"datasets": [{"subsets": [{"image_dir": "a"}, {"image_dir": "r", "is_reg": True}]}]}
    tree = split_dataset_config(data)
    assert [c.rate for c in tree.subsets[0]] == [1.0, 0.0]
    assert "on by default" in (default_rate_note(data) or "")
    assert default_rate_note({"general": {"collage_rate": 0}}) is None
    assert not split_dataset_config({"general": {"collage_rate": 0}, **data}).subsets[0][0].enabled


def test_auto_layouts_keep_the_rule_unless_turned_off() -> None:
    """'auto' means side by side / stacked; with collage_min_span = 0 it means every built-in again."""
    assert CollageConfig().layout_names == ("1x2", "2x1", "1x3", "3x1")
    assert "2x2" in CollageConfig(min_span=0.0).layout_names
    assert CollageConfig(layouts=("2x2", "1x2")).layout_names == ("2x2", "1x2")


def test_an_image_never_pairs_with_itself() -> None:
    """One image with many repeats among few partners: its surplus repeats train single, never twice in a frame."""
    pool = shaped_pool([(832, 1248)] * 2, repeats=[10, 1])
    for epoch in (1, 2):
        assert all(len(set(g)) == len(g) for g in pool.collage_groups(epoch))
    assert pool.structure.single_repeats == (9, 0)
    for _, group in pool.static_groups():
        assert len(set(group)) == len(group)


def test_odd_neighbour_classes_pair_their_leftovers_when_triples_are_too_small() -> None:
    """Pairs only: 3 x 2:3 and 3 x 3:4 portraits make three pairs instead of two pairs and two singles."""
    pool = shaped_pool([(832, 1248)] * 3 + [(864, 1152)] * 3, buckets=NARROW, max_images=2)
    assert sum(pool.structure.single_repeats) == 0 and pool.structure.sizes == (2, 2, 2)
    stats = epoch_stats(frames_of(pool), "dynamic")
    assert stats.span_share == 1.0 and stats.mean_fill >= 0.9


def test_capped_frames_below_own_bucket_train_alone_and_say_why() -> None:
    """max_bucket_reso = 1024: a pair of squares needs a 2:1 frame, capped at 1024 wide far below the
    1024x1024 bucket each square gets alone, so they train alone and the note names the setting; 2:3
    pairs (1024x768 beside a 704x1024 bucket alone) still share frames. With 2048 the squares pair."""
    pool = shaped_pool([(832, 1248)] * 2 + [(1200, 1200)] * 3, buckets=NARROW)
    shapes = pool.shapes
    assert shapes is not None
    for group in pool.collage_groups(1):
        frame = pool.frame_for(group)
        assert all(frame.area >= area_tolerance(NARROW) * shapes.own_bucket_area(i) for i in group)
    assert pool.structure.single_repeats == (0, 0, 1, 1, 1)
    assert alone_images(pool) == {2: "area", 3: "area", 4: "area"}
    assert any("max_bucket_reso = 2048" in n and "3 images train alone" in n for n in frame_note(pool, NARROW))
    wide = shaped_pool([(832, 1248)] * 2 + [(1200, 1200)] * 3)
    assert sum(wide.structure.single_repeats) == 0 and not alone_images(wide)
