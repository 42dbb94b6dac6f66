"""List a class-per-folder image tree (ImageNet train/val, Caltech256), or the official split of
a dataset torchvision's dataset classes read (DTD, Flowers102, FGVCAircraft, StanfordCars), into
a manifest.

    python -m augbench.dataset --root data/imagenet/train --classes classes.tsv --out train.csv
    python -m augbench.dataset --root data --torchvision DTD --split train --split val \
        --classes resources/dtd/classes.tsv --out train.csv

The class list names each class's folder (``<folder><TAB><name>`` lines, or just the
name when it is the folder's name); the line number is the label. Folders the list
does not name are left out, so a class list can pick a subset of a dataset's classes.
Files are listed in sorted order, so the manifest is the same on every machine.

With ``--torchvision NAME`` the images are those the class ``torchvision.datasets.NAME`` lists for
each ``--split`` under ``--root`` (found, not downloaded: fetching the data stays the user's step,
with the class's ``download=True`` where it offers one), in its order. Where the class names its
classes (``classes``), the class list's folder column names them; where it does not (Flowers102),
the class list's lines are its labels 0, 1, ... in order.
"""

from __future__ import annotations

import argparse
import json
import logging

import pandas as pd

from augbench.cli import run, start_logging
from augbench.files import list_tree, read_class_folders, write_manifest

log = logging.getLogger(__name__)


def torchvision_samples(dataset) -> tuple[list[str], list[int]]:
    """The image files and labels of a torchvision dataset, read from the lists its class keeps
    (``samples`` of the folder datasets, ``_samples`` or ``_image_files`` and ``_labels`` of the
    fine-grained ones), so that no image is decoded."""
    for attribute in ("samples", "_samples"):
        if isinstance(getattr(dataset, attribute, None), list):
            pairs = getattr(dataset, attribute)
            return [str(path) for path, _ in pairs], [int(label) for _, label in pairs]
    if hasattr(dataset, "_image_files") and hasattr(dataset, "_labels"):
        return [str(path) for path in dataset._image_files], [int(label) for label in dataset._labels]
    raise ValueError(
        f"torchvision's {type(dataset).__name__} keeps no list of its image files that augbench knows "
        "(samples, _samples, or _image_files and _labels): list it into a manifest instead"
    )


def list_torchvision(
    name: str, root: str, splits: list[str], folders: list[str], options: dict | None = None
) -> pd.DataFrame:
    """The images of the official ``splits`` of ``torchvision.datasets.<name>`` under ``root``,
    labelled by the class list (``folders``: its folder column, in label order)."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, name, None)
    if not isinstance(dataset_class, type):
        raise ValueError(f"torchvision.datasets has no dataset class {name!r} (torchvision {torchvision.__version__})")
    paths, labels = [], []
    named: set[str] = set()  # the class names of the splits (DTD names those each split has)
    for split in splits:
        try:
            dataset = dataset_class(root, split=split, download=False, **(options or {}))
        except RuntimeError as error:  # torchvision's "Dataset not found ... use download=True"
            raise ValueError(
                f"torchvision {name} split {split!r} is not under {root} ({error}); fetch it first, "
                f"e.g. torchvision.datasets.{name}({root!r}, split={split!r}, download=True) where it can download"
            ) from None
        files, targets = torchvision_samples(dataset)
        names = getattr(dataset, "classes", None)
        if names:
            label_of = {folder: label for label, folder in enumerate(folders)}
            named.update(names)
            keep = [names[target] in label_of for target in targets]
            paths += [file for file, kept in zip(files, keep) if kept]
            labels += [label_of[names[target]] for target, kept in zip(targets, keep) if kept]
        else:
            if max(targets, default=-1) >= len(folders):
                raise ValueError(
                    f"torchvision {name} has labels up to {max(targets)}, but the class list has {len(folders)} lines"
                )
            paths += files
            labels += targets
        log.info("torchvision %s split %s: %d images", name, split, len(files))
    # As a tree must have a folder for every class of the list, the dataset must have its classes.
    absent = [folder for folder in folders if named and folder not in named]
    if absent:
        raise ValueError(
            f"torchvision {name} has no class {absent[0]!r} (nor {len(absent) - 1} more) of the class list; "
            f"its classes are named like {sorted(named)[:3]}"
        )
    left_out = sorted(named - set(folders))
    if left_out:
        log.info("left out %d class(es) the class list does not name, e.g. %s", len(left_out), left_out[0])
    return pd.DataFrame({"path": paths, "label": labels})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root", required=True, help="the dataset folder, one sub-folder per class; or the root of --torchvision"
    )
    parser.add_argument("--classes", required=True, help="class list naming each class's folder")
    parser.add_argument("--out", required=True, help="manifest to write")
    parser.add_argument("--torchvision", metavar="NAME", help="a dataset class of torchvision.datasets")
    parser.add_argument("--split", action="append", default=[], help="an official split of --torchvision; repeat")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a further argument of the --torchvision class (partition=1); repeat for each",
    )
    args = parser.parse_args(argv)
    start_logging()
    if args.torchvision:
        if not args.split:
            parser.error("--torchvision needs at least one --split")
        options = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.option)}
        frame = list_torchvision(args.torchvision, args.root, args.split, read_class_folders(args.classes), options)
    else:
        frame = list_tree(args.root, read_class_folders(args.classes))
    write_manifest(args.out, frame)
    log.info("listed %d images of %d classes from %s", len(frame), frame.label.nunique(), args.root)


if __name__ == "__main__":
    run(main)
