"""List the pool rows that retrieval must leave out: copies of the evaluation or training
images, and images the pool's own safety tags mark unsafe.

    python -m augbench.exclude --pool pool.csv --pool-embeddings pool_images.npy \
        --eval-manifest val.csv --eval-embeddings val.npy --eval-threshold 0.95 \
        --train-manifest subset.csv --train-embeddings subset.npy --train-threshold 0.95 \
        --out excluded.csv

A pool image that copies some evaluation (or training) image, by cosine similarity of
their CLIP image embeddings at or above a threshold, is left out (``augbench.copies``):
retrieving it would put a test image into training (or add an image the classifier
already has). ``--eval-calibration`` (``--train-calibration``) in place of the threshold
takes the one ``augbench.copy_calibration`` calibrated to the CLIP in use.

The pool's safety column (LAION's ``NSFW``: UNLIKELY, UNSURE, NSFW) is honoured where
present: rows with a listed value are left out. A column named explicitly must exist.

The table has a row per (pool row, reason), in ``augbench.copies``'s columns;
``augbench.sharded_retrieval search --exclude`` reads a shard's.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from augbench.cli import add_settings, comma_separated, run, setting, settings_from, start_logging
from augbench.copies import (
    COLUMNS,
    SAFETY_TAG,
    CopyChecks,
    add_copy_check_arguments,
    copies,
    copy_checks,
    reference_files,
    write_table,
)
from augbench.pool_parts import block_pieces

log = logging.getLogger(__name__)

# LAION's safety column, honoured where a pool has it unless another is named.
DEFAULT_SAFETY_COLUMN = "NSFW"


@dataclass
class SafetyTags:
    """Which pool images the pool's own safety tags leave out (downloads have no such tags)."""

    safety_column: str | None = setting(
        None,
        help=f"the pool's safety column (None: {DEFAULT_SAFETY_COLUMN} where present)",
        config="pool.safety_column",
    )
    # One comma-separated word on the command line, as the rule writes the config's list.
    drop_safety_values: tuple[str, ...] = setting(
        ("NSFW", "UNSURE"),
        help="comma-separated values of the safety column whose rows are left out (empty: none)",
        config="pool.drop_safety_values",
        parse=comma_separated,
    )


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
    checks: CopyChecks | None = None,
    safety: SafetyTags | None = None,
    *,
    eval_manifest: str | None = None,
    eval_embeddings: str | None = None,
    train_manifest: str | None = None,
    train_embeddings: str | None = None,
    eval_calibration: str | None = None,
    train_calibration: str | None = None,
    shard: int = 0,
    shards: int = 1,
    shard_table: str | None = None,
    parts: int = 1,
) -> pd.DataFrame:
    """Write the table of pool rows to leave out: copies of the evaluation and training images
    (the files named) for each threshold ``checks`` sets, and the rows ``safety`` tags.

    With ``shards`` > 1, only the ``shard``-th block of the pool manifest's rows, whose embeddings
    ``pool_embeddings`` holds; with a shard table (``augbench.precomputed``), its ``shard``-th block
    of ``parts`` parts. The table's pool rows are the pool's."""
    checks, safety = checks or CopyChecks(), safety or SafetyTags()
    turned_on = copy_checks(
        checks, eval_manifest, eval_embeddings, train_manifest, train_embeddings, eval_calibration, train_calibration
    )
    found = []
    pieces = block_pieces(pool_manifest, shard, shards, parts, shard_table, pool_embeddings, None, "images")
    for pool, offset, embeddings, _, name in pieces:
        if len(embeddings) != len(pool):
            raise ValueError(f"{name} has {len(embeddings)} rows but its part of the pool lists {len(pool)} images")
        where = f"pool manifest {pool_manifest}" if pool_manifest else f"pool part {name}"
        piece = [safety_tagged(pool, safety.safety_column, list(safety.drop_safety_values), where)]
        piece += [copies(pool, embeddings, check, checks.index_memory_gb) for check in turned_on]
        found += [frame.assign(pool_row=frame.pool_row.astype(np.int64) + offset) for frame in piece]
    return write_table(out, found, "pool images")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pool = parser.add_mutually_exclusive_group(required=True)
    pool.add_argument("--pool", help="pool manifest")
    pool.add_argument("--shard-table", help="the pool's parts as shards (augbench.precomputed)")
    parser.add_argument("--pool-embeddings", help=".npy of the pool's CLIP image embeddings (with --pool)")
    parser.add_argument("--parts", type=int, default=1, help="parts of a shard table per block")
    parser.add_argument("--out", required=True, help="CSV of the pool rows to leave out, and why")
    parser.add_argument("--shard", type=int, default=0, help="which block of the pool's rows --pool-embeddings holds")
    parser.add_argument("--shards", type=int, default=1, help="blocks the pool's rows are split into")
    add_copy_check_arguments(parser)
    add_settings(parser, SafetyTags)
    args = parser.parse_args(argv)
    start_logging()
    table = exclusions(
        args.pool,
        args.pool_embeddings,
        args.out,
        settings_from(args, CopyChecks),
        settings_from(args, SafetyTags),
        **reference_files(args),
        shard=args.shard,
        shards=args.shards,
        shard_table=args.shard_table,
        parts=args.parts,
    )
    log.info("%d pool images left out of retrieval, listed in %s", table.pool_row.nunique(), args.out)


if __name__ == "__main__":
    run(main)
