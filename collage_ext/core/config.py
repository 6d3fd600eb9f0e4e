"""The option table: the single source of truth for every collage setting.

Each option is declared once (name, type, default, validation, one-line help). Everything else is
generated from the table: validation of TOML values and command-line strings, the README option
reference, the LoRA metadata. Settings cascade like sd-scripts' own dataset TOML:
subset -> dataset -> general -> training ``--config_file`` -> defaults.

Errors follow one form, ``<key> <constraint>, got <value>; <fix> @ <TOML location>``, so a user can
find and fix the line without reading code.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

from collage_ext.core.errors import CollageConfigError
from collage_ext.core.exported import export_root
from collage_ext.core.types import Size

PREFIX = "collage_"
FitMode = Literal["contain", "cover"]
MergeMode = Literal["concat", "positional", "tags"]
Mode = Literal["auto", "dynamic", "static"]

#: Layout names the planner knows; ``RxC`` grids up to 4x4 are accepted too.
BUILTIN_LAYOUTS: tuple[str, ...] = ("1x2", "2x1", "1x3", "3x1", "2x2", "1+2", "2+1", "1/2", "2/1")
#: Built-ins where every cell spans the frame on one axis: what 'auto' means under the scale rule.
SPANNING_LAYOUTS: tuple[str, ...] = ("1x2", "2x1", "1x3", "3x1")


def parse_color(value: object) -> tuple[int, int, int]:
    """Parse ``#rgb``, ``#rrggbb`` or ``r,g,b`` into an RGB triple.

    Examples:
        >>> parse_color("#181818"), parse_color("#fff"), parse_color("24, 24, 24")
        ((24, 24, 24), (255, 255, 255), (24, 24, 24))
    """
    if (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        parts: list[int] = list(value)
    elif isinstance(value, str) and value.startswith("#") and len(value) in (4, 7):
        digits = value[1:] if len(value) == 7 else "".join(c * 2 for c in value[1:])
        try:
            parts = [int(digits[i : i + 2], 16) for i in (0, 2, 4)]
        except ValueError:
            parts = [-1]
    elif isinstance(value, str) and value.count(",") == 2:
        try:
            parts = [int(p) for p in value.split(",")]
        except ValueError:
            parts = [-1]
    else:
        parts = [-1]
    if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
        msg = "must be a colour like '#181818', '#333' or '24,24,24'"
        raise ValueError(msg)
    return parts[0], parts[1], parts[2]


def parse_size(value: object) -> Size | None:
    """Parse ``"W,H"``, ``"WxH"``, an int (square) or a ``[W, H]`` list; ``None``/``""`` means unset."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("must be a size like '1024,1024'")
    if isinstance(value, int):
        parts = [value, value]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    elif isinstance(value, str):
        try:
            parts = [int(p) for p in value.replace("x", ",").split(",")]
        except ValueError:
            parts = []
    else:
        parts = []
    if len(parts) != 2 or not all(isinstance(p, int) and 64 <= p <= 16384 for p in parts):
        msg = "must be a size like '1024,1024' (each side 64..16384)"
        raise ValueError(msg)
    return Size(parts[0], parts[1])


@dataclass(frozen=True, slots=True)
class NumberRule:
    """A numeric option's converter: a finite TOML number in ``[lo, hi]`` (an integer when ``integer``).

    Typed like sd-scripts' own dataset schema (voluptuous ``float`` / ``int`` in ``config_util``):
    a quoted ``"0.5"`` is refused there (``expected float``) and so here, booleans are refused,
    an integer is accepted where a float is expected (sd-scripts' ``Any(float, int)``). NaN and
    +-inf are refused: NaN compares false with every bound, so a range check alone lets it through.
    Command-line values (``collage-ext ... -- --collage_rate 0.5``) are numbers already:
    ``runargs.scan_options`` converts them as argparse's ``type=float`` would.
    """

    lo: float
    hi: float | None
    integer: bool

    def __call__(self, value: object) -> float | int:
        if isinstance(value, str):
            raise ValueError(self.text() + " (a TOML number, not a quoted string)")
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (self.integer and not isinstance(value, int))
        ):
            raise ValueError(self.text())
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(self.text() + " (a finite number, not nan or inf)")
        if value < self.lo or (self.hi is not None and value > self.hi):
            raise ValueError(self.text())
        return int(value) if self.integer else float(value)

    def text(self) -> str:
        """The constraint as the error message states it."""
        kind = "an integer" if self.integer else "a number"
        if self.hi is None:
            return f"must be {kind} >= {self.lo:g}"
        return f"must be {kind} in [{self.lo:g}, {self.hi:g}]"


def _number(lo: float, hi: float | None, *, integer: bool) -> NumberRule:
    return NumberRule(lo, hi, integer)


def _range_text(lo: float, hi: float | None, integer: bool) -> str:
    return NumberRule(lo, hi, integer).text()


def _choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in choices:
            raise ValueError("must be one of " + ", ".join(repr(c) for c in choices))
        return str(value)

    return convert


def _string_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [p.strip() for p in value.split(",") if p.strip()] if value.strip() else []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _layouts(value: object) -> tuple[str, ...]:
    names = _string_list(value)
    if not names:
        raise ValueError("must name at least one layout")
    for name in names:
        if name != "auto" and name not in BUILTIN_LAYOUTS and not _is_grid(name):
            raise ValueError(
                "must contain 'auto' or layout names (" + ", ".join(BUILTIN_LAYOUTS) + ", or RxC up to 4x4)"
            )
    return names


def _is_grid(name: str) -> bool:
    rows, _, cols = name.partition("x")
    return rows.isdigit() and cols.isdigit() and 1 <= int(rows) <= 4 and 1 <= int(cols) <= 4 and name != "1x1"


def _color(value: object) -> tuple[int, int, int]:
    return parse_color(value)


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValueError("must be true or false")


def _optional_path(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("must be a folder path")
    return value


def _extension(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(".") or len(value) < 2:
        raise ValueError("must be a file extension starting with '.'")
    return value


@dataclass(frozen=True, slots=True)
class Option:
    """One row of the option table."""

    name: str  # TOML key / CLI flag without dashes, always starting with ``collage_``
    field: str  # attribute on ``CollageConfig``
    convert: Callable[[object], Any]  # validates and converts; raises ValueError("must ...")
    default: Any
    example: str  # literal TOML right-hand side used in error messages and docs
    kind: str  # human type name for the docs
    help: str


OPTIONS: tuple[Option, ...] = (
    Option(
        "collage_rate",
        "rate",
        _number(0, 1, integer=False),
        1.0,
        "0.5",
        "float",
        "Fraction of training samples that are collage frames; 1 (the default with CollageDataset) puts every "
        "image it can into a collage, 0 trains on single images exactly like plain sd-scripts. Regularisation "
        "subsets default to 0.",
    ),
    Option(
        "collage_layouts",
        "layouts",
        _layouts,
        ("auto",),
        '["1x2", "2x1", "2x2"]',
        "list of str",
        "Allowed layouts: 'auto' (all built-ins) or names from 1x2 (side by side), 2x1 (stacked), 1x3, 3x1, 2x2, "
        "1+2 / 2+1 (one full-height cell beside two stacked), 1/2 / 2/1 (one full-width cell above/below two), RxC.",
    ),
    Option(
        "collage_min_images",
        "min_images",
        _number(2, 16, integer=True),
        2,
        "2",
        "int",
        "Fewest images in one collage frame.",
    ),
    Option(
        "collage_max_images",
        "max_images",
        _number(2, 16, integer=True),
        4,
        "4",
        "int",
        "Most images in one collage frame.",
    ),
    Option(
        "collage_frame_size",
        "frame_size",
        parse_size,
        None,
        '"1024,1024"',
        "str W,H",
        "Size of a collage frame in pixels; unset = the dataset's resolution.",
    ),
    Option(
        "collage_min_span",
        "min_span",
        _number(0, 1, integer=False),
        0.95,
        "0.95",
        "float",
        "The scale rule: each source of a collage spans at least this share of its frame's height or width. "
        "'auto' layouts then are side by side / stacked only (2x2 and other grids only when listed in "
        "collage_layouts), and sources that cannot keep the rule stay single images; 0 turns the rule off.",
    ),
    Option(
        "collage_fit_mode",
        "fit_mode",
        _choice("contain", "cover"),
        "contain",
        '"cover"',
        "str",
        "How a source fills its cell: 'contain' keeps the whole image and pads, 'cover' fills the cell and crops "
        "the centre (or the image's crop box).",
    ),
    Option(
        "collage_max_crop",
        "max_crop",
        _number(0, 0.5, integer=False),
        0.35,
        "0.2",
        "float",
        "The largest share of a source's width (side by side) or height (stacked) that is cropped away, centred, "
        "where its shape differs from its frame's (a fixed frame: collage_frame_size or enable_bucket = false; "
        "coarse bucket steps), so it keeps the full frame height or width; beyond it the cell is padded. Never "
        "cuts into an image with a crop box; 0 = pad only. collage_fit_mode = 'cover' crops without limit.",
    ),
    Option(
        "collage_fill",
        "fill",
        _color,
        (24, 24, 24),
        '"#181818"',
        "str colour",
        "Padding colour for empty space and gutters: '#rgb', '#rrggbb' or 'r,g,b'.",
    ),
    Option(
        "collage_gutter",
        "gutter",
        _number(0, 256, integer=True),
        0,
        "8",
        "int",
        "Pixels of padding between neighbouring cells.",
    ),
    Option(
        "collage_max_upscale",
        "max_upscale",
        _number(1, 16, integer=False),
        1.5,
        "1.5",
        "float",
        "Largest magnification of a source inside a cell; images that would need more are kept out of the "
        "layouts that would magnify them (down to a single image). Upscaled pixels teach nothing new.",
    ),
    Option(
        "collage_caption_merge",
        "caption_merge",
        _choice("concat", "positional", "tags"),
        "concat",
        '"tags"',
        "str",
        "How cell captions merge: 'concat' (reading order), 'positional' ([LEFT] ... [RIGHT] ... markers), "
        "'tags' (order-stable union of booru tags).",
    ),
    Option(
        "collage_repeat_phrases",
        "repeat_phrases",
        _string_list,
        (),
        '["red dress", "<keep_tokens>"]',
        "list of str",
        "Phrases repeated at later token positions of the caption to strengthen them "
        "('<keep_tokens>' = the kept/trigger tags); only phrases present in the caption are repeated.",
    ),
    Option(
        "collage_repeat_count",
        "repeat_count",
        _number(0, 8, integer=True),
        2,
        "2",
        "int",
        "Most extra copies of each repeated phrase (CLIP: one per later 75-token chunk; T5: spread evenly).",
    ),
    Option(
        "collage_cell_caption_dropout_rate",
        "cell_caption_dropout_rate",
        _number(0, 1, integer=False),
        0.0,
        "0.1",
        "float",
        "Probability that one cell's caption text is dropped while its pixels stay "
        "(whole-frame dropout stays sd-scripts' caption_dropout_rate).",
    ),
    Option(
        "collage_mode",
        "mode",
        _choice("auto", "dynamic", "static"),
        "auto",
        '"static"',
        "str",
        "'dynamic' composes new groupings every epoch; 'static' plans fixed variants so latent and text-encoder "
        "caches work; 'auto' picks static when the run caches latents or text-encoder outputs.",
    ),
    Option(
        "collage_variants",
        "variants",
        _number(1, 64, integer=True),
        4,
        "4",
        "int",
        "Static mode: number of planned variants an image's repeats are spread over.",
    ),
    Option(
        "collage_crop_extension",
        "crop_extension",
        _extension,
        ".crop",
        '".crop"',
        "str",
        "Extension of the optional per-image crop-box sidecar file (img.png -> img.crop).",
    ),
    Option(
        "collage_loss_mask",
        "loss_mask",
        _bool,
        False,
        "true",
        "bool",
        "Give padding and gutters the weight collage_pad_weight in sd-scripts' alpha mask (masked loss), so the "
        "#181818 bars are not learned; turns on alpha_mask for the subset (so every image's own alpha, alone "
        "or in a cell, is a loss weight too).",
    ),
    Option(
        "collage_pad_weight",
        "pad_weight",
        _number(0, 1, integer=False),
        0.0,
        "0.1",
        "float",
        "Loss weight of padding pixels when collage_loss_mask is on (0 = ignored, 1 = full weight).",
    ),
    Option(
        "collage_decode",
        "decode",
        _choice("quality", "fast"),
        "quality",
        '"fast"',
        "str",
        "Source decoding: 'quality' shrinks JPEGs in the DCT domain only as far as keeps frames free of extra "
        "aliasing and resamples with Lanczos-3 (libvips; 53-56 dB from a float LANCZOS resize of the full "
        "decode); 'fast' lets the DCT reduction go down to 1.4x the cell and shrinks the rest with an "
        "antialiased bilinear filter: 1.3-1.7x faster on 12 MP JPEGs, visibly a little softer (42-44 dB), and "
        "still less aliasing than sd-scripts' own full decode + INTER_AREA on a zone plate. PNGs decode the "
        "same way in both.",
    ),
    Option(
        "collage_color_profile",
        "color_profile",
        _choice("srgb", "ignore"),
        "srgb",
        '"ignore"',
        "str",
        "Embedded ICC colour profiles (phone photos in Display P3, Adobe RGB): 'srgb' converts collage cells to "
        "sRGB so they keep the colours a viewer shows; 'ignore' reads the pixel values as sRGB, like sd-scripts' "
        "own loader (which single images always use).",
    ),
    Option(
        "collage_on_error",
        "on_error",
        _choice("raise", "skip"),
        "raise",
        '"skip"',
        "str",
        "What an unreadable source image does: 'raise' stops with the file and the cause; 'skip' logs it once, "
        "leaves it out and rebuilds its frame from the remaining images (frames per epoch stay constant).",
    ),
    Option(
        "collage_cache_dir",
        "cache_dir",
        _optional_path,
        None,
        '"/data/collage_cache"',
        "str",
        "Folder for static-mode frames and their latent/text-encoder caches (never the source folders); "
        "unset = <output_dir>/collage_cache, else ~/.cache/collage_ext.",
    ),
)
OPTIONS_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


@dataclass(frozen=True, slots=True)
class CollageConfig:
    """Validated collage settings for one subset (frozen; build with ``resolve_config``)."""

    rate: float = 1.0
    layouts: tuple[str, ...] = ("auto",)
    min_images: int = 2
    max_images: int = 4
    frame_size: Size | None = None
    min_span: float = 0.95
    fit_mode: FitMode = "contain"
    max_crop: float = 0.35
    fill: tuple[int, int, int] = (24, 24, 24)
    gutter: int = 0
    max_upscale: float = 1.5
    caption_merge: MergeMode = "concat"
    repeat_phrases: tuple[str, ...] = ()
    repeat_count: int = 2
    cell_caption_dropout_rate: float = 0.0
    mode: Mode = "auto"
    variants: int = 4
    crop_extension: str = ".crop"
    decode: Literal["quality", "fast"] = "quality"
    color_profile: Literal["srgb", "ignore"] = "srgb"
    on_error: Literal["raise", "skip"] = "raise"
    loss_mask: bool = False
    pad_weight: float = 0.0
    cache_dir: str | None = None

    @property
    def enabled(self) -> bool:
        """True when this subset makes collage frames at all."""
        return self.rate > 0

    @property
    def layout_names(self) -> tuple[str, ...]:
        """The allowed layout names with ``auto`` expanded."""
        names: list[str] = []
        auto = SPANNING_LAYOUTS if self.min_span > 0 else BUILTIN_LAYOUTS  # the scale rule: lines only
        for name in self.layouts:
            names.extend(auto if name == "auto" else (name,))
        return tuple(dict.fromkeys(names))

    def to_metadata(self) -> dict[str, object]:
        """The settings under their TOML names, JSON-serialisable (for LoRA metadata and manifests)."""
        out: dict[str, object] = {}
        for option in OPTIONS:
            value = getattr(self, option.field)
            if option.name == "collage_fill":
                value = "#{:02x}{:02x}{:02x}".format(*value)
            elif isinstance(value, tuple):
                value = list(value)
            out[option.name] = value
        return out


Level = tuple[Mapping[str, Any], str]


def check_keys(mapping: Mapping[str, Any], where: str) -> None:
    """Reject unknown ``collage_*`` keys with a did-you-mean suggestion."""
    for key in mapping:
        if isinstance(key, str) and key.startswith(PREFIX) and key not in OPTIONS_BY_NAME:
            # A truncated name ("collage_fit") means the option it starts ("collage_fit_mode").
            close = suggest_option(key)
            hint = (
                f"; did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else "; see the option reference in README.md"
            )
            msg = f"unknown collage option {key!r}{hint} @ {where}"
            raise CollageConfigError(msg)


#: Words of an unknown key that say which option is meant, whatever its letters: difflib alone
#: matched ``collage_pad_color`` to ``collage_decode`` and ``collage_background`` to ``collage_mode``.
_MEANS = {
    **dict.fromkeys(("color", "colour", "background", "bg", "rgb", "hex"), "collage_fill"),
    **dict.fromkeys(("icc", "srgb", "profile", "colorspace", "space"), "collage_color_profile"),
    **dict.fromkeys(("gap", "gaps", "spacing", "margin", "border", "padding_px"), "collage_gutter"),
    **dict.fromkeys(("crop", "crops", "box"), "collage_crop_extension"),
    **dict.fromkeys(("cache", "folder", "dir", "directory"), "collage_cache_dir"),
    **dict.fromkeys(("error", "errors", "broken", "skip"), "collage_on_error"),
    **dict.fromkeys(("probability", "prob", "chance", "ratio", "share"), "collage_rate"),
    **dict.fromkeys(("grid", "grids", "arrangement", "arrangements"), "collage_layouts"),
    **dict.fromkeys(("resolution", "canvas"), "collage_frame_size"),
    **dict.fromkeys(("mask", "masked"), "collage_loss_mask"),
    **dict.fromkeys(("upscaling", "magnify", "magnification", "enlarge"), "collage_max_upscale"),
}


def suggest_option(key: str) -> list[str]:
    """The option(s) an unknown ``collage_*`` key most likely means: a truncated name, a near typo, a synonym.

    Examples:
        >>> suggest_option("collage_fit"), suggest_option("collage_rat"), suggest_option("collage_pad_color")
        (['collage_fit_mode'], ['collage_rate'], ['collage_fill'])
        >>> suggest_option("collage_background")
        ['collage_fill']
    """
    # A truncated name ("collage_fit") means the option it starts ("collage_fit_mode").
    prefixed = [n for n in OPTIONS_BY_NAME if n.startswith(key)][:1]
    typo = difflib.get_close_matches(key, OPTIONS_BY_NAME, n=1, cutoff=0.85)
    if prefixed or typo:
        return prefixed or typo
    meant: list[str] = []
    for word in key[len(PREFIX) :].lower().split("_"):
        option = _MEANS.get(word)
        if option is not None and option not in meant:
            meant.append(option)
    return meant[:2] or difflib.get_close_matches(key, OPTIONS_BY_NAME, n=1, cutoff=0.6)


def resolve_config(levels: Sequence[Level]) -> CollageConfig:
    """Build a ``CollageConfig`` from mappings ordered most specific first (subset, dataset, general...).

    Each level is ``(mapping, location)``; non-collage keys are ignored, unknown ``collage_*`` keys
    are errors. The first level that sets a key wins, as in sd-scripts' dataset TOML.

    Raises:
        CollageConfigError: naming the key, the constraint, the value, a fix and the location.
    """
    values: dict[str, Any] = {}
    for mapping, where in levels:
        check_keys(mapping, where)
    for option in OPTIONS:
        for mapping, where in levels:
            if option.name in mapping:
                values[option.field] = _convert(option, mapping[option.name], f"{where}['{option.name}']")
                break
    config = CollageConfig(**values)
    _check_cross(config, levels)
    return config


def _convert(option: Option, value: object, where: str) -> Any:
    try:
        return option.convert(value)
    except ValueError as exc:
        msg = f"{option.name} {exc}, got {value!r}; e.g. {option.name} = {option.example} @ {where}"
        raise CollageConfigError(msg) from exc


def _check_cross(config: CollageConfig, levels: Sequence[Level]) -> None:
    where = levels[0][1] if levels else "defaults"
    if config.min_images > config.max_images:
        msg = (
            f"collage_min_images must be <= collage_max_images, got {config.min_images} > {config.max_images}; "
            f"lower collage_min_images or raise collage_max_images @ {where}"
        )
        raise CollageConfigError(msg)
    counts = {layout_cell_count(n) for n in config.layout_names}
    if config.enabled and not any(config.min_images <= c <= config.max_images for c in counts):
        msg = (
            f"collage_layouts has no layout with {config.min_images}..{config.max_images} images "
            f"(collage_min_images = {config.min_images!r}, collage_max_images = {config.max_images!r}), "
            f"got {list(config.layouts)}; add a layout such as '1x2' or widen collage_min/max_images @ {where}"
        )
        raise CollageConfigError(msg)


def layout_cell_count(name: str) -> int:
    """Number of cells of a layout name.

    Examples:
        >>> layout_cell_count("2x2"), layout_cell_count("1+2"), layout_cell_count("1x3")
        (4, 3, 3)
    """
    if name in ("1+2", "2+1", "1/2", "2/1"):
        return 3
    rows, _, cols = name.partition("x")
    return int(rows) * int(cols)


def option_names() -> list[str]:
    """Every option's TOML key, in table order."""
    return [o.name for o in OPTIONS]


def config_fields() -> list[str]:
    """Every ``CollageConfig`` field (kept in sync with the table by a test)."""
    return [f.name for f in fields(CollageConfig)]


@dataclass(frozen=True, slots=True)
class DatasetTree:
    """The collage settings of a dataset TOML, resolved per subset, with the kohya part left over.

    Attributes:
        kohya: the same TOML structure with every ``collage_*`` key removed, ready for sd-scripts'
            own ``ConfigSanitizer`` (which rejects unknown keys).
        subsets: ``subsets[d][s]`` is the resolved config of subset ``s`` of dataset ``d``.
        locations: ``locations[d][s]`` is that subset's TOML location, for messages.
    """

    kohya: dict[str, Any]
    subsets: tuple[tuple[CollageConfig, ...], ...]
    locations: tuple[tuple[str, ...], ...]


def split_dataset_config(
    data: Mapping[str, Any],
    *,
    defaults: Mapping[str, Any] | None = None,
    defaults_where: str = "config_file",
    reg_default_rate: float = 0.0,
) -> DatasetTree:
    """Strip and validate the ``collage_*`` keys of an sd-scripts dataset TOML (already parsed).

    The cascade is subset -> dataset -> ``[general]`` -> ``defaults`` (the training ``--config_file``)
    -> built-in defaults. Regularisation subsets (``is_reg = true``) use ``reg_default_rate`` unless
    they set ``collage_rate`` themselves, so they stay single images by default; so do subsets whose
    ``image_dir`` is a ``collage-ext export`` folder (``exported.export_root``): its frames are collages.

    Raises:
        CollageConfigError: naming the key, the problem, the fix and the TOML location.
    """
    general = dict(data.get("general", {}) or {})
    datasets = list(data.get("datasets", []) or [])
    base: list[Level] = [(general, "data['general']")]
    if defaults:
        base.append(
            ({k: v for k, v in defaults.items() if isinstance(k, str) and k.startswith(PREFIX)}, defaults_where)
        )
    check_keys({k: None for k in data if isinstance(k, str)}, "data")
    resolved: list[tuple[CollageConfig, ...]] = []
    locations: list[tuple[str, ...]] = []
    for d, dataset in enumerate(datasets):
        d_where = f"data['datasets'][{d}]"
        subsets = list(dataset.get("subsets", []) or [])
        row, row_where = [], []
        for s, subset in enumerate(subsets):
            s_where = f"{d_where}['subsets'][{s}]"
            levels: list[Level] = [(subset, s_where), (dataset, d_where), *base]
            if subset.get("is_reg") and not any("collage_rate" in m for m, _ in levels[:1]):
                levels.insert(1, ({"collage_rate": reg_default_rate}, f"{s_where} (regularisation default)"))
            elif "collage_rate" not in subset and (root := export_root(subset.get("image_dir"))) is not None:
                levels.insert(
                    1,
                    (
                        {"collage_rate": 0.0},
                        f"{s_where} (a collage-ext export in {root}: its frames "
                        "are collages already, so they train as single images)",
                    ),
                )
            row.append(resolve_config(levels))
            row_where.append(s_where)
        resolved.append(tuple(row))
        locations.append(tuple(row_where))
    return DatasetTree(strip_collage_keys(data), tuple(resolved), tuple(locations))


def strip_collage_keys(value: Any) -> Any:
    """A deep copy of a TOML structure without ``collage_*`` keys, as plain dicts and lists.

    Plain types also fix an sd-scripts hang: ``toml``'s inline-table dict class cannot be pickled,
    so a ``custom_attributes = {...}`` value would block DataLoader workers.
    """
    if isinstance(value, Mapping):
        return {k: strip_collage_keys(v) for k, v in value.items() if not (isinstance(k, str) and k.startswith(PREFIX))}
    if isinstance(value, list):
        return [strip_collage_keys(v) for v in value]
    return value


def option_reference() -> str:
    """The README option table, generated from ``OPTIONS`` (a test keeps README.md in sync)."""
    rows = ["| key | type | default | what it does |", "| --- | --- | --- | --- |"]
    for option in OPTIONS:
        default = CollageConfig().to_metadata()[option.name]
        shown = "unset" if default is None else (f'"{default}"' if isinstance(default, str) else str(default))
        shown = shown.replace("'", '"').replace("True", "true").replace("False", "false")
        rows.append(f"| `{option.name}` | {option.kind} | `{shown}` | {option.help} |")
    return "\n".join(rows)
