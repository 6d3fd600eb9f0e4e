"""The package's layers: an import may only point down (issue 22 item 6).

A newcomer reads the layers bottom-up; an arrow that runs back up (a geometry module importing a command)
is where a change stops having one obvious home. Function-level and TYPE_CHECKING imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "collage_ext"

# Bottom to top. A module may import its own layer and any layer below it, never one above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("collage_ext.core",),
    ("collage_ext.geometry",),
    ("collage_ext.captions",),
    ("collage_ext.pixels",),
    # the torch-free mirror of sd-scripts; seams is the one list of sd-scripts names and imports no sd-scripts
    ("collage_ext.kohya", "collage_ext.sdscripts.seams"),
    ("collage_ext.plan",),
    # the commands and the adapter sit side by side: neither imports the other
    ("collage_ext.commands", "collage_ext.sdscripts"),
    ("collage_ext.studio",),
    ("collage_ext.cli", "collage_ext.__main__", "collage_ext"),
)
SIDE_BY_SIDE = {("collage_ext.commands", "collage_ext.sdscripts"), ("collage_ext.sdscripts", "collage_ext.commands")}

# Arrows that still run up or sideways, to be removed (delete a line when its arrow goes).
ALLOWED: set[tuple[str, str]] = set()


def group_of(module: str) -> tuple[int, str]:
    """The layer index and the most specific layer prefix a module belongs to."""
    best: tuple[int, str] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    assert best is not None, f"{module} is in no layer: add its package to LAYERS"
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("collage_ext"))
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; collage_ext imports are absolute"
            if node.module and node.module.startswith("collage_ext"):
                found.add(node.module)
    return found


def arrows() -> list[tuple[str, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        for target in sorted(imports_of(path)):
            out.append((source, target))
    return out


def test_every_arrow_points_down() -> None:
    bad = []
    for source, target in arrows():
        (s_index, s_group), (t_index, t_group) = group_of(source), group_of(target)
        if t_group == "collage_ext" and source != "collage_ext" and target == "collage_ext":
            bad.append((source, target))  # importing the package root pulls in its re-exports
        elif t_index > s_index or (s_group, t_group) in SIDE_BY_SIDE:
            bad.append((source, target))
    new = sorted(set(bad) - ALLOWED)
    assert not new, "imports that run up a layer:\n" + "\n".join(f"  {s} -> {t}" for s, t in new)
    gone = sorted(ALLOWED - set(bad))
    assert not gone, "remove these lines from ALLOWED, their arrows are gone:\n" + "\n".join(map(str, gone))


def test_floors() -> None:
    """At most 10 floors of layers; every package of collage_ext sits in one."""
    packages = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    for package in packages:
        group_of(package)
    assert len(LAYERS) <= 10
