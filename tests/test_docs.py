"""The README's option reference is generated from the option table and must stay in sync."""

from __future__ import annotations

from pathlib import Path

from collage_ext.core.config import option_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_option_table_in_sync() -> None:
    """Regenerate with collage_ext.core.config.option_reference() when this fails."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- options:start -->\n", 1)[1].split("<!-- options:end -->", 1)[0]
    assert block.strip() == option_reference().strip()
