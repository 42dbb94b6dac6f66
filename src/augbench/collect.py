"""Join what the shards of a job wrote: generation manifests, or blocks of pool embeddings.

    python -m augbench.collect manifests --shard s0.csv --shard s1.csv --subset subset.csv \
        --classes classes.txt --out added/gen_classname/manifest.csv [--zero-shot-keep 0.5]
    python -m augbench.collect embeddings --part shard0.npy --part shard1.npy --out pool_images.npy
    python -m augbench.collect exclusions --part shard0.csv --part shard1.csv --out excluded.csv

Embedding blocks are joined in the order given, chunk by chunk into a memory-mapped
file, so a pool's embeddings never have to fit in memory.

With ``--zero-shot-keep SHARE`` (images labelled by CLIP zero-shot classification),
each class keeps the most confident SHARE of the images labelled with it, up to its
quota; the choice needs every shard's scores, so it is made here, not per shard.
"""

from __future__ import annotations

import argparse
import logging
import math

import pandas as pd

from augbench.cli import run, start_logging
from augbench.copies import write_table
from augbench.embedding_files import merge_parts
from augbench.files import read_classes, read_manifest, write_manifest
from augbench.quality import quality_of_generated, write_quality
from augbench.quotas import class_quotas

log = logging.getLogger(__name__)


def zero_shot_select(labelled: pd.DataFrame, quotas: list[int], keep_share: float) -> pd.DataFrame:
    """Per class, the most confident ``keep_share`` of its zero-shot-labelled images, up to its quota."""
    if not 0 < keep_share <= 1:
        raise ValueError(f"zero_shot_keep must be in (0, 1], got {keep_share}")
    kept = []
    for label, quota in enumerate(quotas):
        candidates = labelled[labelled.label == label].sort_values("zero_shot_score", ascending=False, kind="stable")
        keep = min(quota, math.ceil(keep_share * len(candidates)))
        if keep < quota:
            log.warning("class %d keeps %d zero-shot-labelled images, short of its quota %d", label, keep, quota)
        kept.append(candidates.head(keep))
    return pd.concat(kept).sort_values("path").reset_index(drop=True)


def collect(
    shard_manifests: list[str],
    subset_manifest: str,
    classes_path: str,
    out: str,
    per_class: int | None = None,
    zero_shot_keep: float | None = None,
    quality_out: str | None = None,
) -> pd.DataFrame:
    """Join the shard manifests into ``out``; ``quality_out`` gets the per-class counts of the
    CLIP-score filter (``augbench.quality``), zero where the method does not filter."""
    frame = pd.concat([read_manifest(path) for path in shard_manifests], ignore_index=True)
    if not frame.path.is_unique:
        raise ValueError(f"shard manifests {shard_manifests} list an image twice")
    if zero_shot_keep is not None:
        if "zero_shot_score" not in frame:
            raise ValueError(f"shard manifests {shard_manifests} have no zero_shot_score column to select by")
        quotas = class_quotas(read_manifest(subset_manifest), len(read_classes(classes_path)), per_class)
        frame = zero_shot_select(frame, quotas, zero_shot_keep)
    write_manifest(out, frame)
    if quality_out:
        classes = read_classes(classes_path)
        write_quality(quality_out, classes, *quality_of_generated(frame, classes))
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    manifests = commands.add_parser("manifests", help="join a generation method's shard manifests")
    manifests.add_argument("--shard", action="append", required=True, help="a shard's manifest; repeat for each")
    manifests.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
    manifests.add_argument("--classes", required=True)
    manifests.add_argument("--out", required=True)
    manifests.add_argument("--per-class", type=int, default=None)
    manifests.add_argument("--zero-shot-keep", type=float, default=None)
    manifests.add_argument("--quality", default=None, help="CSV of the images the CLIP-score filter dropped per class")
    embeddings = commands.add_parser("embeddings", help="join blocks of embeddings, in order")
    embeddings.add_argument("--part", action="append", required=True, help="a block's .npy; repeat, in order")
    embeddings.add_argument("--out", required=True)
    exclusions = commands.add_parser("exclusions", help="join the pool shards' tables of rows left out")
    exclusions.add_argument("--part", action="append", required=True, help="a shard's table; repeat")
    exclusions.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    start_logging()
    if args.command == "exclusions":
        tables = [pd.read_csv(part, keep_default_na=False, na_values=[""]) for part in args.part]
        table = write_table(args.out, tables, "pool images")
        log.info("joined %d tables, %d rows left out, into %s", len(args.part), len(table), args.out)
        return
    if args.command == "embeddings":
        rows = merge_parts(args.part, args.out)
        log.info("joined %d parts, %d rows, into %s", len(args.part), rows, args.out)
        return
    frame = collect(args.shard, args.subset, args.classes, args.out, args.per_class, args.zero_shot_keep, args.quality)
    log.info("%d images from %d shard(s) listed in %s", len(frame), len(args.shard), args.out)


if __name__ == "__main__":
    run(main)
