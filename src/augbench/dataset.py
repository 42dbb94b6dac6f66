"""List a class-per-folder image tree (ImageNet train/val, Caltech256) into a manifest.

    python -m augbench.dataset --root data/imagenet/train --classes classes.tsv --out train.csv

The class list names each class's folder (``<folder><TAB><name>`` lines, or just the
name when it is the folder's name); the line number is the label. Folders the list
does not name are left out, so a class list can pick a subset of a dataset's classes.
Files are listed in sorted order, so the manifest is the same on every machine.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pandas as pd

from augbench.cli import start_logging
from augbench.files import read_class_folders, write_manifest

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def list_tree(root: str, folders: list[str]) -> pd.DataFrame:
    """Every image file under ``root/<folder>/`` (recursively), labelled by the folder's position."""
    root_path = Path(root)
    if not root_path.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    missing = [folder for folder in folders if not (root_path / folder).is_dir()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"dataset folder {root} has no folder for class(es) {shown} of the class list")
    paths, labels = [], []
    for label, folder in enumerate(folders):
        found = sorted(
            os.path.join(directory, name)
            for directory, _, names in os.walk(root_path / folder)
            for name in names
            if name.lower().endswith(IMAGE_SUFFIXES)
        )
        if not found:
            raise ValueError(f"dataset folder {root_path / folder} (class {folder}) holds no images")
        paths += found
        labels += [label] * len(found)
    extra = sorted({entry.name for entry in root_path.iterdir() if entry.is_dir()} - set(folders))
    if extra:
        log.info("left out %d folder(s) the class list does not name, e.g. %s", len(extra), extra[0])
    return pd.DataFrame({"path": paths, "label": labels})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the dataset folder, one sub-folder per class")
    parser.add_argument("--classes", required=True, help="class list naming each class's folder")
    parser.add_argument("--out", required=True, help="manifest to write")
    args = parser.parse_args(argv)
    start_logging()
    frame = list_tree(args.root, read_class_folders(args.classes))
    write_manifest(args.out, frame)
    log.info("listed %d images of %d classes from %s", len(frame), frame.label.nunique(), args.root)


if __name__ == "__main__":
    main()
