"""One producer of frame jobs (issue 22 item 1): only ``collage_ext.plan`` decides which frames a run has.

The CLI, the studio, ``check``, ``export``, ``preview``, the statistics and the sd-scripts adapter all
ask ``PlannedSubset.jobs`` / ``plan.jobs.frames_for``; none of them groups sources or samples a
frame's parameters itself. This test reads the source: a call of a frame-listing or frame-sampling
primitive outside the module that owns it fails, naming the module and the call.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "collage_ext"

#: primitive -> the modules allowed to call it (the producer's own).
OWNERS: dict[str, set[str]] = {
    # a pool's groups of an epoch (grouping.static_variants draws a variant's groups with it too)
    "group_instances": {"collage_ext/plan/pool.py", "collage_ext/geometry/grouping.py"},
    "static_variants": {"collage_ext/plan/pool.py"},  # a pool's static variants
    "collage_groups": {"collage_ext/plan/subsets.py"},  # a subset's slots of an epoch
    "static_groups": {"collage_ext/plan/subsets.py"},  # a subset's static frames
    "slot_job": {"collage_ext/plan/subsets.py", "collage_ext/sdscripts/loading.py"},  # the job of a slot
    "static_job": {"collage_ext/plan/subsets.py", "collage_ext/sdscripts/loading.py"},  # the job of a static frame
    # a frame's parameters: sampled when a job is listed, re-sampled when a source fails
    "make_params": {
        "collage_ext/plan/subsets.py",
        "collage_ext/plan/jobs.py",
        "collage_ext/plan/policy.py",
        "collage_ext/plan/collage.py",
    },
}


def calls(path: Path) -> list[tuple[str, int]]:
    """Names of the primitives ``path`` calls (as a function or a method), with line numbers."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in OWNERS:
                found.append((name, node.lineno))
    return found


def test_only_the_producer_lists_frames() -> None:
    """No module outside ``collage_ext.plan``'s owners groups sources or samples frame parameters."""
    strays = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        strays += [f"{rel}:{line}: {name}()" for name, line in calls(path) if rel not in OWNERS[name]]
    assert not strays, "frames listed outside the producer (ask PlannedSubset.jobs instead):\n" + "\n".join(strays)


@pytest.mark.parametrize("name", sorted(OWNERS))
def test_every_owner_still_calls_its_primitive(name: str) -> None:
    """The allow-list names real callers (a stale entry would let a new caller in unnoticed)."""
    for rel in OWNERS[name]:
        assert name in {n for n, _ in calls(PACKAGE.parent / rel)}, f"{rel} no longer calls {name}(): drop it"
