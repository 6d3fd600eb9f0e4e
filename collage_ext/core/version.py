"""The package version, in one place (setup.py, exported metadata and cache keys read it)."""

__version__ = "0.1.0"
