"""Split one labelled dataset into training and validation images, per class (Caltech-256).

    python -m augbench.split --manifest all.csv --classes classes.tsv \
        --train-per-class 60 [--val-per-class 25] --seed 0 --train train.csv --val val.csv

Each class gives ``--train-per-class`` images, drawn at random, to the training set (the
reservoir the subset and the real upper bound draw from) and the rest, or
``--val-per-class`` of the rest, to the validation set; no image is in both. Files are
sorted before the draw, so the split depends on the seed alone, not on the manifest's
row order. Nothing is decoded here: the subset draw and the validation screen do that.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from augbench.cli import run, start_logging
from augbench.files import read_classes, read_manifest, write_manifest

log = logging.getLogger(__name__)


def split_per_class(
    frame: pd.DataFrame,
    names: list[str],
    train_per_class: int,
    seed: int,
    val_per_class: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (train, val): ``train_per_class`` random images of each class, and the rest
    (or ``val_per_class`` random ones of the rest)."""
    if train_per_class < 1:
        raise ValueError(f"dataset.split.train_per_class must be at least 1, got {train_per_class}")
    if val_per_class is not None and val_per_class < 1:
        raise ValueError(f"dataset.split.val_per_class must be at least 1, got {val_per_class}")
    if frame.path.duplicated().any():
        repeated = frame.path[frame.path.duplicated()].iloc[0]
        raise ValueError(f"the dataset lists {repeated} more than once; a split of it could overlap")
    outside = sorted(set(frame.label) - set(range(len(names))))
    if outside:
        raise ValueError(f"the dataset has labels {outside[:5]} outside the {len(names)} classes of the class list")
    rng = np.random.default_rng(seed)
    frame = frame.sort_values("path", kind="stable").reset_index(drop=True)
    labels = frame.label.to_numpy()
    wanted = train_per_class + (val_per_class or 1)
    train_rows, val_rows = [], []
    for label, name in enumerate(names):
        rows = np.flatnonzero(labels == label)
        if len(rows) < wanted:
            raise ValueError(
                f"class {label} ({name}) has {len(rows)} images, fewer than the {wanted} the split needs "
                f"({train_per_class} for training and {val_per_class or 'at least 1'} for validation)"
            )
        order = rng.permutation(rows)
        rest = order[train_per_class:]
        train_rows.append(np.sort(order[:train_per_class]))
        val_rows.append(np.sort(rest if val_per_class is None else rest[:val_per_class]))
    train = frame.iloc[np.concatenate(train_rows)].reset_index(drop=True)
    val = frame.iloc[np.concatenate(val_rows)].reset_index(drop=True)
    return train, val


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="every image of the dataset (path, label)")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--train-per-class", type=int, required=True)
    parser.add_argument("--val-per-class", type=int, help="validation images per class; default: all the rest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", required=True, help="manifest of the training images to write")
    parser.add_argument("--val", required=True, help="manifest of the validation images to write")
    args = parser.parse_args(argv)
    start_logging()
    names = read_classes(args.classes)
    train, val = split_per_class(
        read_manifest(args.manifest), names, args.train_per_class, args.seed, args.val_per_class
    )
    write_manifest(args.train, train)
    write_manifest(args.val, val)
    log.info("split %d classes into %d training and %d validation images", len(names), len(train), len(val))


if __name__ == "__main__":
    run(main)
