"""Merge a generation method's shard manifests into the method's manifest.

    python -m augbench.collect --shard s0.csv --shard s1.csv --subset subset.csv \
        --classes classes.txt --out added/gen_classname/manifest.csv [--zero-shot-keep 0.5]

With ``--zero-shot-keep SHARE`` (images labelled by CLIP zero-shot classification),
each class keeps the most confident SHARE of the images labelled with it, up to its
quota; the choice needs every shard's scores, so it is made here, not per shard.
"""

from __future__ import annotations

import argparse
import logging
import math

import pandas as pd

from augbench.files import read_classes, read_manifest, write_manifest
from augbench.subset import class_quotas

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
) -> pd.DataFrame:
    frame = pd.concat([read_manifest(path) for path in shard_manifests], ignore_index=True)
    if not frame.path.is_unique:
        raise ValueError(f"shard manifests {shard_manifests} list an image twice")
    if zero_shot_keep is not None:
        if "zero_shot_score" not in frame:
            raise ValueError(f"shard manifests {shard_manifests} have no zero_shot_score column to select by")
        quotas = class_quotas(read_manifest(subset_manifest), len(read_classes(classes_path)), per_class)
        frame = zero_shot_select(frame, quotas, zero_shot_keep)
    write_manifest(out, frame)
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shard", action="append", required=True, help="a shard's manifest; repeat for each")
    parser.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-class", type=int, default=None)
    parser.add_argument("--zero-shot-keep", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    frame = collect(args.shard, args.subset, args.classes, args.out, args.per_class, args.zero_shot_keep)
    log.info("%d images from %d shard(s) listed in %s", len(frame), len(args.shard), args.out)


if __name__ == "__main__":
    main()
