"""Keep each class's best-ranked downloaded images that copy no evaluation or training image.

    python -m augbench.screen_downloads --downloaded added/m/downloaded.csv --subset subset.csv \
        --classes classes.txt --model ViT-L-14 --pretrained laion2b_s32b_b82k \
        --eval-manifest val.csv --eval-embeddings val.npy --eval-threshold 0.95 \
        --train-manifest subset.csv --train-embeddings subset.npy --train-threshold 0.95 \
        --out added/m/manifest.csv --excluded added/m/excluded.csv

A pool searched here is screened before retrieval (``augbench.exclude``); images that
arrive as URLs (a kNN service's results) are not in it. Once downloaded, they are
embedded with the same CLIP and checked the same way: an image at or above a threshold
of cosine similarity with some evaluation (or training) image is left out, as is one
that cannot be read. Each class then keeps its ``quota`` best-ranked images of the rest
(``augbench.quotas.keep_best``), which is why the download step keeps every success.
``--excluded`` lists each image left out (``augbench.copies`` columns; ``pool_row`` is
its row of ``--downloaded``).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from augbench.cli import start_logging, use_threads
from augbench.copies import COLUMNS, CopyCheck, add_copy_check_arguments, copies, copy_checks, write_table
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
    model: str,
    pretrained: str | None = None,
    per_class: int | None = None,
    checks: list[CopyCheck] = (),
    batch_size: int = 256,
    num_workers: int = 2,
    device: str = "auto",
    index_memory_gb: float = 16.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the kept images' manifest and the table of images left out; return both."""
    candidates = read_manifest(downloaded)
    classes = read_classes(classes_path)
    quotas = class_quotas(read_manifest(subset), len(classes), per_class)
    checks = [check for check in checks if check.threshold is not None]
    found = []
    if checks and len(candidates):
        # Imported here: without a check, nothing is embedded and torch is not needed.
        from augbench.clip_embeddings import encode_image_files

        embeddings, reasons = encode_image_files(
            candidates.path.tolist(), model, pretrained, batch_size, num_workers, device, skip_unreadable=True
        )
        found += [unreadable_rows(candidates, reasons)]
        found += [copies(candidates, embeddings, check, index_memory_gb) for check in checks]
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
    parser.add_argument("--model", required=True, help="the CLIP the evaluation and training images were embedded with")
    parser.add_argument("--pretrained", default=None)
    add_copy_check_arguments(parser, "a download")
    parser.add_argument("--batch-size", type=int, default=256, help="images per embedding batch")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers decoding images")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument(
        "--index-memory-gb", type=float, default=16.0, help="memory the index of the reference images may use"
    )
    args = parser.parse_args(argv)
    start_logging()
    use_threads(args.threads)
    kept, table = screen_downloads(
        args.downloaded,
        args.subset,
        args.classes,
        args.out,
        args.excluded,
        args.model,
        args.pretrained,
        args.per_class,
        copy_checks(args),
        args.batch_size,
        args.num_workers,
        args.device,
        index_memory_gb=args.index_memory_gb,
    )
    log.info("kept %d images in %s; %d left out, listed in %s", len(kept), args.out, len(table), args.excluded)


if __name__ == "__main__":
    main()
