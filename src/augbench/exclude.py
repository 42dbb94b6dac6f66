"""List the pool rows that retrieval must leave out: copies of the evaluation or training
images, and images the pool's own safety tags mark unsafe.

    python -m augbench.exclude --pool pool.csv --pool-embeddings pool_images.npy \
        --eval-manifest val.csv --eval-embeddings val.npy --eval-threshold 0.95 \
        --train-manifest subset.csv --train-embeddings subset.npy --train-threshold 0.95 \
        --out excluded.csv

A pool image that copies some evaluation (or training) image, by cosine similarity of
their CLIP image embeddings at or above a threshold, is left out (``augbench.copies``):
retrieving it would put a test image into training (or add an image the classifier
already has).

The pool's safety column (LAION's ``NSFW``: UNLIKELY, UNSURE, NSFW) is honoured where
present: rows with a listed value are left out. A column named explicitly must exist.

The table has a row per (pool row, reason), in ``augbench.copies``'s columns;
``augbench.retrieve --exclude`` reads it.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from augbench.cli import start_logging
from augbench.copies import (
    COLUMNS,
    EVAL_DUPLICATE,
    SAFETY_TAG,
    TRAIN_DUPLICATE,
    CopyCheck,
    add_copy_check_arguments,
    copies,
    write_table,
)
from augbench.files import read_manifest

log = logging.getLogger(__name__)

# LAION's safety column, honoured where a pool has it unless another is named.
DEFAULT_SAFETY_COLUMN = "NSFW"
DEFAULT_DROP_VALUES = ("NSFW", "UNSURE")


def safety_tagged(
    pool: pd.DataFrame, column: str | None, drop_values: list[str], pool_name: str = "the pool manifest"
) -> pd.DataFrame:
    """The pool rows whose safety column holds one of ``drop_values`` (case-insensitive).

    ``column`` None honours LAION's ``NSFW`` column where the pool has one; a named
    column that the pool lacks is an error.
    """
    if column is None:
        column = DEFAULT_SAFETY_COLUMN if DEFAULT_SAFETY_COLUMN in pool else None
    elif column not in pool:
        raise ValueError(
            f"{pool_name} has no column {column!r}, which pool.safety_column names "
            f"(its columns: {list(pool.columns)}); set pool.safety_column: null for pools without safety tags"
        )
    if column is None or not drop_values:
        return pd.DataFrame(columns=COLUMNS)
    tags = pool[column].astype(str).str.strip()
    rows = np.flatnonzero(tags.str.upper().isin({value.strip().upper() for value in drop_values}))
    return pd.DataFrame(
        {
            "pool_row": rows,
            "path": pool.path.to_numpy()[rows],
            "reason": SAFETY_TAG,
            "similarity": np.nan,
            "matched": [f"{column}={tag}" for tag in tags.to_numpy()[rows]],
        },
        columns=COLUMNS,
    )


def exclusions(
    pool_manifest: str,
    pool_embeddings: str,
    out: str,
    eval_manifest: str | None = None,
    eval_embeddings: str | None = None,
    eval_threshold: float | None = None,
    train_manifest: str | None = None,
    train_embeddings: str | None = None,
    train_threshold: float | None = None,
    safety_column: str | None = None,
    drop_safety_values: list[str] = DEFAULT_DROP_VALUES,
    index_memory_gb: float = 16.0,
) -> pd.DataFrame:
    """Write the table of pool rows to leave out; a None threshold skips that check."""
    pool = read_manifest(pool_manifest, labelled=False)
    embeddings = np.load(pool_embeddings, mmap_mode="r")
    if len(embeddings) != len(pool):
        raise ValueError(f"{pool_embeddings} has {len(embeddings)} rows but {pool_manifest} lists {len(pool)} images")
    found = [safety_tagged(pool, safety_column, list(drop_safety_values), f"pool manifest {pool_manifest}")]
    checks = [
        CopyCheck(EVAL_DUPLICATE, eval_manifest, eval_embeddings, eval_threshold, "--eval"),
        CopyCheck(TRAIN_DUPLICATE, train_manifest, train_embeddings, train_threshold, "--train"),
    ]
    found += [copies(pool, embeddings, check, index_memory_gb) for check in checks if check.threshold is not None]
    return write_table(out, found, "pool images")


def _values(text: str) -> list[str]:
    return [value.strip() for value in text.split(",") if value.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True, help="pool manifest")
    parser.add_argument("--pool-embeddings", required=True, help=".npy of the pool's CLIP image embeddings")
    parser.add_argument("--out", required=True, help="CSV of the pool rows to leave out, and why")
    add_copy_check_arguments(parser, "a pool image")
    parser.add_argument(
        "--safety-column",
        default=None,
        help=f"the pool's safety column (default: {DEFAULT_SAFETY_COLUMN} where present)",
    )
    parser.add_argument(
        "--drop-safety-values",
        type=_values,
        default=list(DEFAULT_DROP_VALUES),
        help="comma-separated values of the safety column whose rows are left out (empty: none)",
    )
    parser.add_argument(
        "--index-memory-gb", type=float, default=16.0, help="memory the index of the exclusion set may use"
    )
    args = parser.parse_args(argv)
    start_logging()
    table = exclusions(
        args.pool,
        args.pool_embeddings,
        args.out,
        args.eval_manifest,
        args.eval_embeddings,
        args.eval_threshold,
        args.train_manifest,
        args.train_embeddings,
        args.train_threshold,
        args.safety_column,
        args.drop_safety_values,
        args.index_memory_gb,
    )
    log.info("%d pool images left out of retrieval, listed in %s", table.pool_row.nunique(), args.out)


if __name__ == "__main__":
    main()
