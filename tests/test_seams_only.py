"""Only ``collage_ext/sdscripts/seams.py`` imports or names sd-scripts internals.

Every other module of the package is parsed (AST, nothing is imported): an import of ``library`` /
``library.*``, an identifier (name, attribute, definition, keyword, imported alias) or a string
constant from ``seams.INTERNAL_NAMES``, a string starting with ``library.``, or an attribute access
``x.<name>`` from ``seams.INTERNAL_ATTRIBUTES`` fails the test with file:line. Docstrings are prose and
are not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from collage_ext.sdscripts import seams

PACKAGE = Path(__file__).resolve().parents[1] / "collage_ext"
SEAMS = PACKAGE / "sdscripts" / "seams.py"


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function bodies)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            found.add(id(body[0].value))
    return found


def violations(source: str, names: frozenset[str], attributes: frozenset[str]) -> Iterator[tuple[int, str]]:
    """(line, what) for every use of an sd-scripts internal in ``source``."""
    tree = ast.parse(source)
    prose = docstrings(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "library" or alias.name.startswith("library."):
                    yield line, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and (node.module == "library" or node.module.startswith("library.")):
                yield line, f"from {node.module} import ..."
            yield from ((line, f"imports {a.name}") for a in node.names if a.name in names)
        elif isinstance(node, ast.Name) and node.id in names:
            yield line, f"name {node.id}"
        elif isinstance(node, ast.Attribute) and (node.attr in names or node.attr in attributes):
            yield line, f"attribute .{node.attr}"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in names:
            yield line, f"defines {node.name}"
        elif isinstance(node, ast.keyword) and node.arg in names:
            yield line, f"keyword {node.arg}="
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            text = node.value
            if (
                text in names
                or text.startswith("library.")
                or text in attributes
                and text.isidentifier()
                and text
                not in {
                    "bucket_info",
                    "resize_interpolation",
                    "min_bucket_reso",
                    "max_bucket_reso",
                    "bucket_reso_steps",
                }
            ):
                yield line, f"string {text!r}"


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != SEAMS)


def test_only_seams_names_sd_scripts_internals() -> None:
    """Every module but seams.py is free of sd-scripts imports, classes, hooks and dataset attributes."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in modules()
        for line, what in violations(path.read_text(encoding="utf-8"), seams.INTERNAL_NAMES, seams.INTERNAL_ATTRIBUTES)
    ]
    assert not found, (
        "sd-scripts internals outside collage_ext/sdscripts/seams.py (move them into seams):\n" + "\n".join(found)
    )


def test_seams_itself_names_them() -> None:
    """The lists are not empty words: seams.py uses them (so the scan above looks for real names)."""
    used = {
        what.split()[-1].lstrip(".").rstrip("=").strip("'")
        for _, what in violations(SEAMS.read_text(encoding="utf-8"), seams.INTERNAL_NAMES, seams.INTERNAL_ATTRIBUTES)
    }
    for name in (
        "load_image_with_face_info",
        "new_cache_text_encoder_outputs",
        "config_util",
        "get_strategy",
        "image_data",
        "absolute_path",
        "current_epoch",
    ):
        assert name in used, name


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("from library import config_util", "from library import ..."),
        ("import library.train_util as tu", "import library.train_util"),
        ("x = importlib.import_module('library.strategy_base')", "string 'library.strategy_base'"),
        ("class A:\n    def load_image_with_face_info(self): pass", "defines load_image_with_face_info"),
        ("def f(d):\n    return d.image_data", "attribute .image_data"),
        ("def f(s):\n    return s.TokenizeStrategy.get_strategy()", "attribute .get_strategy"),
        ("def f(e):\n    return e['text_encoder_outputs_list']", "string 'text_encoder_outputs_list'"),
    ],
)
def test_scan_catches_each_kind(snippet: str, expected: str) -> None:
    """Each way of naming an internal is caught."""
    assert expected in [what for _, what in violations(snippet, seams.INTERNAL_NAMES, seams.INTERNAL_ATTRIBUTES)]


def test_scan_ignores_prose_and_our_own_words() -> None:
    """Docstrings may explain sd-scripts; config keys and LoRA metadata keys are not its internals."""
    snippet = (
        'def f(d):\n    """Like sd-scripts\' process_caption and DatasetGroup."""\n'
        '    return d.get("bucket_info"), d["resize_interpolation"], d.caption, d.subsets\n'
    )
    assert list(violations(snippet, seams.INTERNAL_NAMES, seams.INTERNAL_ATTRIBUTES)) == []


def test_every_seam_names_its_v011_place() -> None:
    """Each seam says where sd-scripts v0.11 has it (file + symbol), read from the stored v0.11 sources."""
    assert all(seam.v011.startswith("library/") and ".py" in seam.v011 for seam in seams.SEAMS)
    assert all(place.startswith("library/") for place in seams.OTHER_PLACES.values())
