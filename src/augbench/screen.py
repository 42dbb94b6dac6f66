"""Find the images of a manifest that cannot be read, so a run skips and counts them.

    python -m augbench.screen --manifest val.csv --out val_readable.csv \
        --unreadable val_unreadable.csv [--threads 8]

Every image is decoded the way training reads it, so only files that cannot be decoded
at all are dropped (``augbench.unreadable``). The unreadable list keeps each file's
manifest row and the reason.
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from augbench.cli import run, start_logging
from augbench.files import read_manifest, write_manifest
from augbench.unreadable import reasons, unreadable_frame, write_unreadable

log = logging.getLogger(__name__)


def screen(frame: pd.DataFrame, threads: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a manifest into (readable rows, unreadable list)."""
    why = reasons(frame.path, threads)
    bad = [reason is not None for reason in why]
    readable = frame[[not b for b in bad]].reset_index(drop=True)
    unreadable = unreadable_frame(frame[bad], [reason for reason in why if reason is not None])
    return readable, unreadable


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
    run(main)
