"""Which model family the running trainer trains, and a clear refusal for the ones collage_ext does not model.

Every script that reaches ``--dataset_class`` builds ``CollageDataset``, but the adapter sizes merged
captions for the run's text encoder, so it must know the family (``kohya.families``). It asks, in
order: the tokenize strategy the script set before building the dataset (``seams``), the script's
name (sd-scripts v0.9.1 has no strategies; ``flux_train.py`` sets its strategy only after the
dataset), then the training arguments exactly as the CLI reads them. Families whose text encoders
have budgets the adapter does not model, and scripts that cannot be sized, stop at start-up, before
any model loads, instead of silently training with a wrong caption budget.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from collage_ext.core.errors import CollageConfigError
from collage_ext.kohya import families
from collage_ext.kohya.families import Family
from collage_ext.sdscripts import seams

#: Scripts tested with CollageDataset (README "Supported trainers" lists the same), from the family table.
SUPPORTED: tuple[str, ...] = families.supported_scripts()

#: script stem -> why it is refused, from the family table.
REFUSED: dict[str, str] = families.refused_scripts()


def _script(argv0: str | None) -> str:
    return Path(argv0 if argv0 is not None else (sys.argv[0] if sys.argv else "")).stem


def run_family(values: Mapping[str, Any], strategy: Any = None, argv0: str | None = None) -> tuple[Family, str]:
    """The family of the running trainer, and how it was recognised (for the log).

    ``values`` are the training arguments; ``strategy`` the tokenize strategy the script has set (or
    None); ``argv0`` the script (default ``sys.argv[0]``).
    """
    seam = seams.strategy_seam(strategy)
    if seam is not None:
        return families.refine(families.by_name(seam.family), values, f"tokenize strategy {seam.cls}")
    script = _script(argv0)
    family = families.by_script(script)
    if family is not None:
        return families.refine(family, values, f"script {script}.py")
    return families.detect(values)


def refuse_unsupported(
    argv0: str | None = None, strategy: Any = None, values: Mapping[str, Any] | None = None
) -> tuple[Family, str]:
    """Stop when the running script, its tokenize strategy or its arguments belong to an unsupported family.

    Returns:
        the family and how it was recognised, when it is supported.

    Raises:
        CollageConfigError: names the script (or family), why, and the supported scripts.
    """
    script = _script(argv0)
    if script in REFUSED:
        raise CollageConfigError(families.refusal_message(script, REFUSED[script]))
    family, why = run_family(values or {}, strategy, argv0)
    if family.refused:
        raise CollageConfigError(families.refusal_message(family.name, family.refused))
    return family, why
