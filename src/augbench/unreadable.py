"""Images that cannot be read: why each one cannot, and the list a run skips and counts.

An image is decoded the way training reads it (``augbench.images.load_rgb``): grayscale,
16-bit, CMYK, palette, transparency and huge images are converted, so only files that
cannot be decoded at all (empty, truncated, not an image) are unreadable. The list keeps
each file's manifest row (path and label) and the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from augbench.files import write_manifest
from augbench.images import UnreadableImage, load_rgb

log = logging.getLogger(__name__)

UNREADABLE_COLUMNS = ["path", "label", "reason"]


def why_unreadable(path: str) -> str | None:
    """None when the image decodes, else the reason it does not."""
    try:
        load_rgb(path)
    except UnreadableImage as error:
        return str(error)
    return None


def reasons(paths: Iterable[str], threads: int = 1) -> list[str | None]:
    """``why_unreadable`` of each path, in order; decoding releases the GIL, so threads help."""
    paths = list(paths)
    if threads <= 1:
        return [why_unreadable(path) for path in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(why_unreadable, paths, chunksize=64))


def unreadable_frame(rows: pd.DataFrame, why: list[str]) -> pd.DataFrame:
    """The unreadable list: the rows' path and label with the reason of each."""
    return pd.DataFrame({"path": rows.path.to_numpy(), "label": rows.label.to_numpy(), "reason": why})


def write_unreadable(path: str, unreadable: pd.DataFrame) -> None:
    """Log each skipped image with its reason, and write the list."""
    for reason in unreadable.reason:
        log.warning("skipped: %s", reason)
    write_manifest(path, unreadable.reindex(columns=UNREADABLE_COLUMNS))
