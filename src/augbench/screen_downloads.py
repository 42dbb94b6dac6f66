"""Keep each class's best-ranked downloaded images that copy no evaluation or training image.

    python -m augbench.screen_downloads --downloaded added/m/downloaded.csv --subset subset.csv \
        --classes classes.txt --model ViT-L-14 --pretrained laion2b_s32b_b82k \
        --eval-manifest val.csv --eval-embeddings val.npy --eval-threshold 0.95 \
        --train-manifest subset.csv --train-embeddings subset.npy --train-threshold 0.95 \
        --out added/m/manifest.csv --excluded added/m/excluded.csv

A pool searched here is screened before retrieval (``augbench.exclude``); images that
arrive as URLs (a kNN service's results) are not in it. Once downloaded, they are
embedded with the same CLIP and checked the same way: an image at or above a threshold
(given, or calibrated: ``--eval-calibration``) of cosine similarity with some evaluation
(or training) image is left out, as is one that cannot be read. Each class then keeps
its ``quota`` best-ranked images of the rest (``augbench.quotas.keep_best``), which is
why the download step keeps every success.
``--excluded`` lists each image left out (``augbench.copies`` columns; ``pool_row`` is
its row of ``--downloaded``).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from augbench.cli import add_settings, run, settings_from, start_logging, use_threads
from augbench.clip_settings import ImageEmbedding, encode_images
from augbench.copies import (
    COLUMNS,
    CopyChecks,
    add_copy_check_arguments,
    copies,
    copy_checks,
    reference_files,
    write_table,
)
from augbench.files import read_classes, read_manifest, write_manifest
from augbench.quotas import class_quotas, keep_best

log = logging.getLogger(__name__)

UNREADABLE = "unreadable"
SHORT_OF_SCREENED = (
    "more of them copy evaluation or training images than the spare candidates can replace "
    "(the job's log counts them by reason; Snakemake removes a failed job's excluded.csv): "
    "raise the method's download.factor"
)


def screen_downloads(
    downloaded: str,
    subset: str,
    classes_path: str,
    out: str,
    excluded_out: str,
    clip: ImageEmbedding,
    per_class: int | None = None,
    checks: CopyChecks | None = None,
    *,
    eval_manifest: str | None = None,
    eval_embeddings: str | None = None,
    train_manifest: str | None = None,
    train_embeddings: str | None = None,
    eval_calibration: str | None = None,
    train_calibration: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the kept images' manifest and the table of images left out; return both. ``clip`` must
    be the CLIP that embedded the evaluation and training images (the files named)."""
    candidates = read_manifest(downloaded)
    classes = read_classes(classes_path)
    quotas = class_quotas(read_manifest(subset), len(classes), per_class)
    checks = checks or CopyChecks()
    turned_on = copy_checks(
        checks, eval_manifest, eval_embeddings, train_manifest, train_embeddings, eval_calibration, train_calibration
    )
    found = []
    # Without a check, nothing is embedded (nor torch loaded).
    if turned_on and len(candidates):
        embeddings, reasons = encode_images(candidates.path.tolist(), clip)
        found += [unreadable_rows(candidates, reasons)]
        found += [copies(candidates, embeddings, check, checks.index_memory_gb) for check in turned_on]
    table = write_table(excluded_out, found, "downloaded images")
    usable = pd.Series(True, index=candidates.index)
    usable.iloc[table.pool_row.to_numpy(dtype=np.int64)] = False
    kept = keep_best(candidates, usable, quotas, classes, "screened downloads", SHORT_OF_SCREENED)
    write_manifest(out, kept)
    return kept, table


def unreadable_rows(candidates: pd.DataFrame, reasons: list[str]) -> pd.DataFrame:
    """Downloaded images the embedding could not read (img2dataset wrote them, but a file may still be cut off)."""
    rows = np.flatnonzero([reason != "" for reason in reasons])
    return pd.DataFrame(
        {
            "pool_row": rows,
            "path": candidates.path.to_numpy()[rows],
            "reason": UNREADABLE,
            "similarity": np.nan,
            "matched": [reasons[row] for row in rows],
        },
        columns=COLUMNS,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--downloaded", required=True, help="manifest of every downloaded image (augbench.download)")
    parser.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", required=True, help="manifest of the kept images")
    parser.add_argument("--excluded", required=True, help="CSV of the downloaded images left out, and why")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: as many as real)")
    # The CLIP must be the one the evaluation and training images were embedded with.
    add_settings(parser, ImageEmbedding)
    add_copy_check_arguments(parser)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args(argv)
    start_logging()
    use_threads(args.threads)
    kept, table = screen_downloads(
        args.downloaded,
        args.subset,
        args.classes,
        args.out,
        args.excluded,
        settings_from(args, ImageEmbedding),
        args.per_class,
        settings_from(args, CopyChecks),
        **reference_files(args),
    )
    log.info("kept %d images in %s; %d left out, listed in %s", len(kept), args.out, len(table), args.excluded)


if __name__ == "__main__":
    run(main)
