"""Training arguments as sd-scripts reads them: command-line options and the ``--config_file`` TOML.

A ``RunArgs`` carries them to the run resolution (``run.resolve_run``). The CLI builds one from
``--config`` and the options after ``--`` (``datasets.build_run``); the adapter from the trainer's
own namespace (``sdscripts.startup.run_arguments``). Options are read generically, in both
``--key value`` and ``--key=value`` forms, and the ``--config_file`` TOML the way sd-scripts does
(sections flattened one level).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import toml

from collage_ext.core.errors import CollageConfigError

logger = logging.getLogger(__name__)


@dataclass
class RunArgs:
    """What collage_ext needs to know about the training run.

    Attributes:
        namespace: the trainer's own ``argparse.Namespace`` (``None`` for the CLI, or rebuilt from argv).
        values: option name -> value (from the namespace, else argv and the config file).
        explicit: option names the user set themselves (command line or ``--config_file``).
        found: a sentence saying where the arguments came from, for the start-up log.
    """

    namespace: argparse.Namespace | None
    values: dict[str, Any] = field(default_factory=dict)
    explicit: set[str] = field(default_factory=set)
    found: str = ""

    def get(self, name: str, default: Any = None) -> Any:
        """An option's value, ``default`` when unset."""
        value = self.values.get(name)
        return default if value is None else value

    @property
    def collage_defaults(self) -> dict[str, Any]:
        """``collage_*`` keys from the training ``--config_file`` (sd-scripts keeps unknown keys on args)."""
        return {k: v for k, v in self.values.items() if k.startswith("collage_")}

    @property
    def caches_latents(self) -> bool:
        """True when sd-scripts will cache latents (in memory or on disk)."""
        return bool(self.get("cache_latents") or self.get("cache_latents_to_disk"))

    @property
    def caches_text_encoder(self) -> bool:
        """True when sd-scripts will cache text-encoder outputs."""
        return bool(self.get("cache_text_encoder_outputs") or self.get("cache_text_encoder_outputs_to_disk"))


def parse_argv(argv: Sequence[str]) -> RunArgs:
    """Rebuild the options collage_ext needs from a command line (and its ``--config_file``)."""
    given = scan_options(argv)
    values: dict[str, Any] = {}
    config_file = given.get("config_file")
    if isinstance(config_file, str):
        values.update(read_config_file(config_file))
    values.update(given)
    explicit = set(values)
    return RunArgs(None, values, explicit, "sys.argv" + (f" and {config_file}" if config_file else ""))


def read_config_file(path: str) -> dict[str, Any]:
    """Read a training ``--config_file`` TOML the way sd-scripts does: top-level sections flattened."""
    file = Path(path)
    if not file.suffix:
        file = file.with_suffix(".toml")  # sd-scripts appends .toml when the name has none
    try:
        data = toml.load(file)
    except (OSError, toml.TomlDecodeError) as exc:
        msg = f"--config_file {file} cannot be read: {exc}; check the path and the TOML syntax"
        raise CollageConfigError(msg) from exc
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def scan_options(argv: Sequence[str], *, strict: bool = False) -> dict[str, Any]:
    """Read sd-scripts command-line options generically: ``--key value``, ``--key=value``, bare ``--flag``.

    Extra values of multi-value options (``--network_args a=b c=d``) are skipped; with ``strict`` a
    token that is not an option is an error instead (for command lines a user typed for us).

    Examples:
        >>> scan_options(["--seed", "42", "--cache_latents", "--resolution=1024,1024"])
        {'seed': 42, 'cache_latents': True, 'resolution': '1024,1024'}
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) < 3:
            if strict:
                msg = f"trainer argument {token!r} is not an option; pass sd-scripts options like --seed 42 after --"
                raise CollageConfigError(msg)
            i += 1
            continue
        name, eq, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if eq:
            out[name] = _coerce(value)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[name] = _coerce(argv[i + 1])
            i += 1
        else:
            out[name] = True
        i += 1
    return out


def _coerce(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def explicit_keys(argv: Sequence[str], config_file: object) -> set[str]:
    """Option names the user set: on the command line or in the ``--config_file`` TOML."""
    explicit = set(scan_options(argv))
    if isinstance(config_file, str) and config_file:
        try:
            explicit |= set(read_config_file(config_file))
        except CollageConfigError:
            pass  # sd-scripts already read it successfully; a second read failing is not ours to report
    return explicit
