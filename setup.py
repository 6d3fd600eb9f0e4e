"""collage-ext: collage training for kohya-ss sd-scripts (SDXL / Illustrious, Flux / Chroma)."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="collage-ext",
    version="0.1.0",
    description="Collage training for kohya-ss sd-scripts: several training images per frame, merged captions.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["collage_ext", "collage_ext.*"]),
    package_data={"collage_ext": ["py.typed"], "collage_ext.studio": ["static/*"]},
    # pyvips[binary]: libvips (bundled, no system package) resamples cells 3-4x faster than Pillow
    # (collage_ext/pixels/resample.py)
    install_requires=["Pillow>=9.1", "numpy", "toml", "pyvips[binary]>=2.2.3"],
    extras_require={
        "cli": ["tqdm"],
        # the browser page: a small ASGI server; the page itself is plain HTML/JS shipped in the package
        "studio": ["starlette>=0.37", "uvicorn>=0.29"],
        # studio tests drive Debian's chromium (/usr/bin/chromium) through Playwright; no browser is downloaded
        # ruff and mypy are pinned: a new release may add rules or change the format, and CI must not fail on its own
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "tqdm",
            "starlette>=0.37",
            "uvicorn>=0.29",
            "httpx",
            "playwright>=1.40",
            "ruff==0.17.5",
            "mypy==2.4.1",
            "types-toml",
            "types-tqdm",
        ],
        # bench_layout.py's photos
        "bench": ["scikit-image", "scikit-learn"],
    },
    entry_points={"console_scripts": ["collage-ext = collage_ext.cli:main"]},
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
