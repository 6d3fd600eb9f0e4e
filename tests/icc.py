"""ICC v2 matrix/TRC display profiles built from their published definitions (no downloads).

A phone's Display P3 profile and Adobe RGB (1998) are matrix/TRC profiles: three colorants (the
primaries, adapted from D65 to the D50 profile connection space with the Bradford transform), a
white point and a tone curve per channel. That is all this module writes, in the ICC.1:2001-04
layout littlecms reads. The expected sRGB values in the tests come from separately published
linear-light matrices (P3-D65 -> sRGB, Adobe RGB -> sRGB), not from these bytes.
"""

from __future__ import annotations

import struct

import numpy as np

D65 = (0.3127, 0.3290)
D50_XYZ = (0.9642, 1.0, 0.8249)
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])

#: (primaries r, g, b as xy, white xy, tone curve) of the test profiles.
DISPLAY_P3 = (((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), D65, "srgb")
ADOBE_RGB = (((0.640, 0.330), (0.210, 0.710), (0.150, 0.060)), D65, 563 / 256)


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def colorants(primaries: tuple[tuple[float, float], ...], white: tuple[float, float]) -> np.ndarray:
    """Columns r, g, b: the D50-adapted XYZ of each primary at full intensity."""
    raw = np.stack([_xyz(p) for p in primaries], axis=1)
    scale = np.linalg.solve(raw, _xyz(white))
    to_xyz = raw * scale  # RGB -> XYZ under the profile's own white
    source, target = _BRADFORD @ _xyz(white), _BRADFORD @ np.array(D50_XYZ)
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(target / source) @ _BRADFORD
    return adapt @ to_xyz


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz_tag(xyz: np.ndarray | tuple[float, ...]) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15(v) for v in xyz)


def _curve_tag(trc: float | str) -> bytes:
    if trc == "srgb":  # parametric type 3: the sRGB curve
        params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
        return b"para" + b"\0" * 4 + struct.pack(">HH", 3, 0) + b"".join(_s15(p) for p in params)
    return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(float(trc) * 256)) + b"\0\0"


def _desc_tag(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (
        b"desc"
        + b"\0" * 4
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">II", 0, 0)
        + struct.pack(">HB", 0, 0)
        + b"\0" * 67
    )


def matrix_profile(definition: tuple, name: str) -> bytes:
    """The bytes of an ICC v2 'mntr' RGB profile for ``(primaries, white, trc)``."""
    primaries, white, trc = definition
    columns = colorants(primaries, white)
    curve = _curve_tag(trc)
    tags = [
        (b"desc", _desc_tag(name)),
        (b"cprt", b"text" + b"\0" * 4 + b"No copyright, test profile\0"),
        (b"wtpt", _xyz_tag(D50_XYZ)),
        (b"rXYZ", _xyz_tag(columns[:, 0])),
        (b"gXYZ", _xyz_tag(columns[:, 1])),
        (b"bXYZ", _xyz_tag(columns[:, 2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        while (offset + len(data)) % 4:
            data += b"\0"
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    body = struct.pack(">I", len(tags)) + table + data
    size = 128 + len(body)
    header = (
        struct.pack(">I", size)
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"\0" * 4
        + b"\0" * 4
        + b"\0" * 8
        + b"\0" * 8
        + struct.pack(">I", 0)
        + b"".join(_s15(v) for v in D50_XYZ)
        + b"\0" * 4
        + b"\0" * 16
        + b"\0" * 28
    )
    assert len(header) == 128
    return header + body


# Published linear-light conversions to sRGB (independent of the profile bytes above).
P3_TO_SRGB = np.array([[1.2249401, -0.2249404, 0.0], [-0.0420569, 1.0420571, 0.0], [-0.0196376, -0.0786361, 1.0982735]])
ADOBE_TO_SRGB = np.array([[1.3983557, -0.3983557, 0.0], [0.0, 1.0, 0.0], [0.0, -0.0429275, 1.0429275]])


def srgb_decode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def srgb_encode(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def expected_srgb(rgb: tuple[int, int, int], space: str) -> tuple[int, int, int]:
    """The sRGB pixel a colour-managed viewer shows for ``rgb`` stored in ``space`` ('p3' or 'adobe')."""
    v = np.array(rgb) / 255.0
    linear = srgb_decode(v) if space == "p3" else v ** (563 / 256)
    out = srgb_encode((P3_TO_SRGB if space == "p3" else ADOBE_TO_SRGB) @ linear)
    return tuple(int(round(x)) for x in out * 255)  # type: ignore[return-value]
