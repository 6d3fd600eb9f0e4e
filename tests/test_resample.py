"""collage_ext.pixels.resample: libvips' Lanczos-3 where it applies, else Pillow's LANCZOS; same geometry, fork-safe."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import warnings
from pathlib import Path

import pytest
from PIL import Image

from collage_ext.pixels import resample
from tests.imaging import float_lanczos, photo, psnr, stop_band_residue, zone_plate

LANCZOS = Image.Resampling.LANCZOS

pytestmark = pytest.mark.skipif(resample._pyvips() is None, reason="pyvips / libvips cannot load here")


# (source size, output size, box): whole-image shrinks, crops, shrinks just above 1, big shrinks
CASES = [
    ((1503, 1001), (512, 341), (0, 0, 1503, 1001)),
    ((1503, 1001), (200, 200), (100, 0, 1100, 1000)),
    ((1503, 1001), (100, 60), (3, 5, 1003, 605)),
    ((1503, 1001), (128, 96), (0, 0, 1503, 1001)),
    ((1000, 700), (700, 500), (0, 0, 1000, 700)),
    ((123, 77), (122, 40), (0, 0, 123, 77)),
    ((123, 77), (60, 76), (1, 0, 123, 77)),
    ((97, 61), (13, 9), (0, 0, 97, 61)),
]


@pytest.mark.parametrize(("src", "size", "box"), CASES, ids=[f"{c[0]}->{c[1]}@{c[2]}" for c in CASES])
def test_vips_matches_a_float_lanczos_reference(
    src: tuple[int, int], size: tuple[int, int], box: tuple[float, float, float, float]
) -> None:
    """Same geometry as Pillow (box, fractional edges, crop offsets), within 47 dB of float LANCZOS on photos."""
    image = photo(src, seed=sum(src))
    assert resample.vips_applies(image.mode, size, box)
    out = resample.lanczos(image, size, box)
    assert out.size == size and out.mode == "RGB"
    reference = float_lanczos(image, size, box)
    # measured 48.0-55.0 dB (Pillow's own LANCZOS: 55.3-58.3 dB); a box off by half a pixel gives < 40
    assert psnr(out, reference) >= 47.0


def test_gray_images_stay_gray() -> None:
    """8-bit gray is resampled as one band, like Pillow does."""
    image = photo((400, 300)).convert("L")
    out = resample.lanczos(image, (100, 75), (0, 0, 400, 300))
    assert out.mode == "L"
    assert psnr(out, image.resize((100, 75), LANCZOS)) >= 47.0


def test_zone_plate_aliasing_like_pillow() -> None:
    """On a zone plate the stop band is as clean as Pillow's LANCZOS (measured +0.0-0.5 gray levels)."""
    for n, out in ((1600, 533), (1500, 512), (800, 355), (1600, 133)):
        image = zone_plate(n)
        ours = resample.lanczos(image, (out, out), (0, 0, n, n))
        pillow = image.resize((out, out), LANCZOS)
        assert stop_band_residue(ours, n) <= stop_band_residue(pillow, n) + 0.6, (n, out)


@pytest.mark.parametrize(
    ("mode", "size", "box"),
    [
        ("RGBA", (100, 75), (0, 0, 400, 300)),  # not 8-bit RGB / gray
        ("RGB", (500, 75), (0, 0, 400, 300)),  # enlarges one axis
        ("RGB", (100, 75), (0.5, 0, 400, 300)),  # an edge between pixels: libvips would centre differently
        ("RGB", (100, 75), (0, 0.25, 400, 300)),
        ("RGB", (100, 75), (0, 0, 399.5, 300)),
    ],
)
def test_other_geometries_are_pillow_bytes(
    mode: str, size: tuple[int, int], box: tuple[float, float, float, float]
) -> None:
    """Outside libvips' case the result is exactly Pillow's LANCZOS call."""
    image = photo((400, 300)).convert(mode)
    assert not resample.vips_applies(image.mode, size, box)
    expected = image.resize(size, LANCZOS, box=box, reducing_gap=resample.REDUCING_GAP)
    assert resample.lanczos(image, size, box).tobytes() == expected.tobytes()


@pytest.mark.usefixtures("pillow_resampler")
def test_without_libvips_everything_is_pillow() -> None:
    """When pyvips cannot load, the shrink libvips would do is Pillow's LANCZOS, byte for byte."""
    image = photo((400, 300))
    assert not resample.vips_applies(image.mode, (100, 75), (0, 0, 400, 300))
    expected = image.resize((100, 75), LANCZOS, reducing_gap=resample.REDUCING_GAP)
    assert resample.lanczos(image, (100, 75), (0, 0, 400, 300)).tobytes() == expected.tobytes()


def _digest_in_child(queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    image = photo((900, 700), seed=9)
    queue.put(hashlib.sha256(resample.lanczos(image, (300, 233), (0, 0, 900, 700)).tobytes()).hexdigest())


def test_forked_workers_resample_after_the_parent_did() -> None:
    """sd-scripts' DataLoader forks workers after the main process rendered frames: they must not hang.

    libvips' thread pool does not survive fork; pixels pulled with Region.fetch never start it.
    """
    image = photo((900, 700), seed=9)
    parent = hashlib.sha256(resample.lanczos(image, (300, 233), (0, 0, 900, 700)).tobytes()).hexdigest()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python >= 3.12 warns about fork with threads
        children = [context.Process(target=_digest_in_child, args=(queue,)) for _ in range(2)]
        for child in children:
            child.start()
    digests = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0, "a forked worker hung or failed after the parent used libvips"
    assert digests == [parent, parent]


def test_geometry_grid_sizes_are_exact() -> None:
    """Every output has exactly the planned size, including 1-px outputs and ratios just above 1."""
    image = photo((123, 77), seed=4)
    for w, h in itertools.product([1, 2, 60, 122, 123], [1, 3, 40, 76, 77]):
        for right in (123, 122.5):
            box = (0, 0, right, 77)
            out = resample.lanczos(image, (w, h), box)
            assert out.size == (w, h)
            if min(w, h) >= 40:
                assert psnr(out, float_lanczos(image, (w, h), box)) >= 45.0, (w, h, right)


# --- plain PNGs: decoded by libvips straight into the shrink ------------------------------------


def test_plain_png_takes_the_libvips_path_with_pillow_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An 8-bit RGB / gray PNG is read by libvips and gives exactly the bytes of Pillow's decode + shrink."""
    from collage_ext.core.types import Size
    from collage_ext.pixels.fit import fit_image
    from collage_ext.pixels.images import load_fitted, open_image

    opened: list[str] = []
    original = resample.open_plain_png
    monkeypatch.setattr(resample, "open_plain_png", lambda *a: opened.append(a[0]) or original(*a))
    for mode in ("RGB", "L"):
        path = tmp_path / f"plain_{mode}.png"
        photo((832, 1216), seed=3).convert(mode).save(path)
        for cell, fit in ((Size(512, 1024), "contain"), (Size(300, 300), "cover"), (Size(200, 500), "stretch")):
            opened.clear()
            fitted, rect = load_fitted(path, cell, fit)  # type: ignore[arg-type]
            expected, expected_rect = fit_image(open_image(path), cell, fit)  # type: ignore[arg-type]
            assert opened == [str(path)] and rect == expected_rect
            assert fitted.tobytes() == expected.tobytes(), (mode, cell, fit)


def test_truncated_png_is_still_named(tmp_path: Path) -> None:
    """libvips gives up on a truncated PNG; Pillow's path then reports it with the file's name."""
    from collage_ext.core.errors import CollageInputError
    from collage_ext.core.types import Size
    from collage_ext.pixels.images import load_fitted

    whole = tmp_path / "whole.png"
    photo((600, 400)).save(whole)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CollageInputError, match=r"truncated.png is truncated or corrupt"):
        load_fitted(truncated, Size(100, 100))


def _png_digest_in_child(path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    from collage_ext.core.types import Size
    from collage_ext.pixels.images import load_fitted

    queue.put(hashlib.sha256(load_fitted(path, Size(200, 200))[0].tobytes()).hexdigest())


def test_forked_workers_read_pngs_after_the_parent_did(tmp_path: Path) -> None:
    """The libvips PNG loader, like the shrink, runs on the calling thread: forked workers do not hang."""
    from collage_ext.core.types import Size
    from collage_ext.pixels.images import load_fitted

    path = tmp_path / "plain.png"
    photo((640, 480), seed=5).save(path)
    parent = hashlib.sha256(load_fitted(path, Size(200, 200))[0].tobytes()).hexdigest()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        child = context.Process(target=_png_digest_in_child, args=(str(path), queue))
        child.start()
    assert queue.get(timeout=60) == parent
    child.join(timeout=60)
    assert child.exitcode == 0
