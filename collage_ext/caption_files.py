"""Start-up checks on the dataset files that sd-scripts would otherwise fail on obscurely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CollageInputError
from .runargs import RunArgs


def check_caption_files(kohya_config: dict[str, Any], run: RunArgs) -> None:
    """Every caption file sd-scripts will read must be UTF-8; name the first one that is not.

    sd-scripts raises a bare ``UnicodeDecodeError`` from deep inside its dataset constructor; this
    reports the file and the fix instead, before any model loads.
    """
    general = kohya_config.get("general", {}) or {}
    for dataset in kohya_config.get("datasets", []) or []:
        for subset in dataset.get("subsets", []) or []:
            image_dir = subset.get("image_dir")
            if not image_dir or subset.get("metadata_file") or not Path(image_dir).is_dir():
                continue
            extension = (subset.get("caption_extension") or dataset.get("caption_extension")
                         or general.get("caption_extension") or run.get("caption_extension") or ".caption")
            for path in sorted(Path(image_dir).glob(f"*{extension}")):
                try:
                    text = path.read_bytes().decode("utf-8")
                except UnicodeDecodeError as exc:
                    msg = (f"caption file {path} is not UTF-8 (byte {exc.start}: {exc.reason}); "
                           "re-save it as UTF-8 (most editors: Save As -> Encoding UTF-8)")
                    raise CollageInputError(msg) from exc
                if not text.strip():  # sd-scripts asserts on these deep inside its dataset constructor
                    msg = (f"caption file {path} is empty; write a caption, or delete the file so the image "
                           "uses the subset's class_tokens")
                    raise CollageInputError(msg)
