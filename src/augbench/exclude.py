"""List the pool rows that retrieval must leave out: copies of the evaluation or training
images, and images the pool's own safety tags mark unsafe.

    python -m augbench.exclude --pool pool.csv --pool-embeddings pool_images.npy \
        --eval-manifest val.csv --eval-embeddings val.npy --eval-threshold 0.95 \
        --train-manifest subset.csv --train-embeddings subset.npy --train-threshold 0.95 \
        --out excluded.csv

A pool image whose CLIP image embedding has cosine similarity at or above a threshold with
some evaluation (or training) image is a near-duplicate of it: retrieving it would put a
test image into training (or add an image the classifier already has). The exclusion
set is small beside the pool, so it is the index (``augbench.search.build_index``), and
the memory-mapped pool searches it block by block for its single nearest neighbour.
The index is exact up to 200,000 reference images (``augbench.search.choose_factory``);
above, an inverted file: approximate, but a near-copy lies so close to its original that
the lists a search visits almost always hold it.

The pool's safety column (LAION's ``NSFW``: UNLIKELY, UNSURE, NSFW) is honoured where
present: rows with a listed value are left out. A column named explicitly must exist.

The table has a row per (pool row, reason): ``pool_row``, ``path``, ``reason``,
``similarity`` (empty for a safety tag) and ``matched`` (the evaluation or training
image matched, or the tag). ``augbench.retrieve --exclude`` reads it.
"""

from __future__ import annotations

import argparse
import logging
from typing import NamedTuple

import numpy as np
import pandas as pd

from augbench.cli import start_logging
from augbench.files import atomic_path, read_manifest
from augbench.search import BLOCK, build_index, release_pages

log = logging.getLogger(__name__)

COLUMNS = ["pool_row", "path", "reason", "similarity", "matched"]
EVAL_DUPLICATE = "evaluation duplicate"
TRAIN_DUPLICATE = "training duplicate"
SAFETY_TAG = "safety tag"
# LAION's safety column, honoured where a pool has it unless another is named.
DEFAULT_SAFETY_COLUMN = "NSFW"
DEFAULT_DROP_VALUES = ("NSFW", "UNSURE")


def nearest(
    pool_embeddings: np.ndarray, references: np.ndarray, memory_bytes: float = 8e9, block: int = BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, reference row) of each pool row's nearest reference, searched in blocks of pool rows."""
    similarity = np.full(len(pool_embeddings), -np.inf, dtype=np.float32)
    matched = np.full(len(pool_embeddings), -1, dtype=np.int64)
    if len(references) == 0:
        return similarity, matched
    index = build_index(references, memory_bytes=memory_bytes)
    for start in range(0, len(pool_embeddings), block):
        rows = np.array(pool_embeddings[start : start + block], dtype=np.float32)
        release_pages(pool_embeddings)
        scores, ids = index.search(rows, 1)
        similarity[start : start + len(rows)] = scores[:, 0]
        matched[start : start + len(rows)] = ids[:, 0]
    return similarity, matched


def duplicates(
    pool: pd.DataFrame,
    pool_embeddings: np.ndarray,
    references: pd.DataFrame,
    reference_embeddings: np.ndarray,
    threshold: float,
    reason: str,
    memory_bytes: float = 8e9,
) -> pd.DataFrame:
    """The pool rows at or above ``threshold`` cosine similarity to a reference image."""
    if not 0 < threshold <= 1:
        raise ValueError(f"the {reason} threshold must be in (0, 1], not {threshold}")
    if len(reference_embeddings) != len(references):
        raise ValueError(f"{len(reference_embeddings)} {reason} embeddings but {len(references)} images listed")
    similarity, matched = nearest(pool_embeddings, reference_embeddings, memory_bytes)
    # A float32 inner product of two equal unit vectors can fall a rounding error below 1.
    rows = np.flatnonzero(similarity >= threshold - 1e-6)
    return pd.DataFrame(
        {
            "pool_row": rows,
            "path": pool.path.to_numpy()[rows],
            "reason": reason,
            "similarity": similarity[rows],
            "matched": references.path.to_numpy()[matched[rows]],
        },
        columns=COLUMNS,
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


class CopyCheck(NamedTuple):
    """One check for copies: of which images (manifest and embeddings), from what similarity on."""

    reason: str
    manifest: str | None
    embeddings: str | None
    threshold: float | None
    flag: str  # the command-line prefix that names the check's inputs in errors


def copies(pool: pd.DataFrame, embeddings: np.ndarray, check: CopyCheck, index_memory_gb: float) -> pd.DataFrame:
    """The rows of ``pool`` that copy an image of ``check``'s manifest."""
    if not (check.manifest and check.embeddings):
        raise ValueError(f"{check.flag}-threshold needs {check.flag}-manifest and {check.flag}-embeddings")
    references = read_manifest(check.manifest)
    vectors = np.load(check.embeddings)
    return duplicates(pool, embeddings, references, vectors, check.threshold, check.reason, index_memory_gb * 1e9)


def write_table(out: str, found: list[pd.DataFrame], what: str) -> pd.DataFrame:
    """Write the rows ``found`` (frames of COLUMNS) as one table, ordered by row, and return it."""
    table = pd.concat([frame for frame in found if len(frame)] or [pd.DataFrame(columns=COLUMNS)], ignore_index=True)
    table = table.sort_values(["pool_row", "reason"], kind="stable").reset_index(drop=True)
    for reason, count in table.reason.value_counts().items():
        log.info("%d %s left out: %s", count, what, reason)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    return table


def excluded_rows(path: str, pool: pd.DataFrame) -> np.ndarray:
    """The pool rows an exclusion table lists, checked against the pool it was made for."""
    table = pd.read_csv(path, keep_default_na=False)
    missing = {"pool_row", "path"} - set(table.columns)
    if missing:
        raise ValueError(f"exclusion table {path} lacks column(s) {sorted(missing)}")
    rows = table.pool_row.to_numpy(dtype=np.int64)
    outside = rows[(rows < 0) | (rows >= len(pool))]
    if len(outside):
        raise ValueError(f"exclusion table {path} lists pool row {outside[0]}, but the pool has {len(pool)} rows")
    moved = np.flatnonzero(pool.path.to_numpy()[rows] != table.path.to_numpy())
    if len(moved):
        row = rows[moved[0]]
        raise ValueError(
            f"exclusion table {path} lists {table.path.iloc[moved[0]]} as pool row {row}, "
            f"but the pool's row {row} is {pool.path.iloc[row]}: it was made for another pool"
        )
    return np.unique(rows)


def add_copy_check_arguments(parser: argparse.ArgumentParser, screened: str) -> None:
    """The options of the two copy checks, of ``screened`` (what is checked) against evaluation and training images."""
    for name, what in (("eval", "evaluation (validation)"), ("train", "training")):
        parser.add_argument(f"--{name}-manifest", help=f"manifest of the {what} images")
        parser.add_argument(f"--{name}-embeddings", help=f".npy of the {what} images' CLIP image embeddings")
        parser.add_argument(
            f"--{name}-threshold",
            type=float,
            default=None,
            help=f"cosine similarity at or above which {screened} is a copy of a {what} image (default: no check)",
        )


def copy_checks(args: argparse.Namespace) -> list[CopyCheck]:
    """The two copy checks as the options of ``add_copy_check_arguments`` set them."""
    return [
        CopyCheck(EVAL_DUPLICATE, args.eval_manifest, args.eval_embeddings, args.eval_threshold, "--eval"),
        CopyCheck(TRAIN_DUPLICATE, args.train_manifest, args.train_embeddings, args.train_threshold, "--train"),
    ]


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
