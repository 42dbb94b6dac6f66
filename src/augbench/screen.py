"""Find the images of a manifest that cannot be read, so a run skips and counts them.

    python -m augbench.screen --manifest val.csv --out val_readable.csv \
        --unreadable val_unreadable.csv [--threads 8]

Every image is decoded the way training reads it (``augbench.images.load_rgb``):
grayscale, 16-bit, CMYK, palette, transparency and huge images are converted, so only
files that cannot be decoded at all (empty, truncated, not an image) are dropped.
The unreadable list keeps each file's manifest row and the reason.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from augbench.cli import start_logging
from augbench.files import read_manifest, write_manifest
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


def screen(frame: pd.DataFrame, threads: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a manifest into (readable rows, unreadable list)."""
    why = reasons(frame.path, threads)
    bad = [reason is not None for reason in why]
    readable = frame[[not b for b in bad]].reset_index(drop=True)
    unreadable = unreadable_frame(frame[bad], [reason for reason in why if reason is not None])
    return readable, unreadable


def write_unreadable(path: str, unreadable: pd.DataFrame) -> None:
    """Log each skipped image with its reason, and write the list."""
    for reason in unreadable.reason:
        log.warning("skipped: %s", reason)
    write_manifest(path, unreadable.reindex(columns=UNREADABLE_COLUMNS))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True, help="manifest of the readable rows")
    parser.add_argument("--unreadable", required=True, help="CSV of the unreadable rows and why")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    start_logging()
    readable, unreadable = screen(read_manifest(args.manifest), args.threads)
    write_manifest(args.out, readable)
    write_unreadable(args.unreadable, unreadable)
    log.info("%d readable, %d unreadable images in %s", len(readable), len(unreadable), args.manifest)


if __name__ == "__main__":
    main()
