"""Draw the target training subset: a stratified, seeded sample of the training set.

    python -m augbench.subset --manifest train.csv --classes classes.txt \
        --per-class 10 --seed 0 --out subset.csv [--rest rest.csv]

``--per-class`` takes that many images of each class; ``--fraction`` takes that
share of each class instead (at least one image); ``--file-list`` takes exactly the
training images a text file names, one a line, by file name or by path relative to the
class folders' parent (a published split, as SimCLR's 10% ImageNet). ``--rest`` writes
the images not drawn. The real upper bound draws its extra real images from that rest with
``--like subset.csv --times K``: K times as many per class as the subset has.

Every drawn image is decoded first; one that cannot be read is replaced by another
of its class and listed, with the reason, in ``--unreadable``. A listed image is not
replaced: one that cannot be read stops the draw, naming it, as a given split must not
change silently.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from augbench.cli import run, start_logging
from augbench.files import read_classes, read_manifest, write_manifest
from augbench.quotas import class_quotas
from augbench.unreadable import reasons, unreadable_frame, write_unreadable

log = logging.getLogger(__name__)


def draw_subset(
    frame: pd.DataFrame,
    n_classes: int,
    seed: int,
    per_class: int | None = None,
    fraction: float | None = None,
    threads: int = 1,
    names: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return (subset, rest, unreadable). Exactly one of ``per_class`` and ``fraction`` is given."""
    if (per_class is None) == (fraction is None):
        raise ValueError("give exactly one of per_class and fraction")
    if per_class is not None and per_class < 1:
        raise ValueError(f"subset.per_class must be at least 1, got {per_class}")
    if fraction is not None and not 0 < fraction <= 1:
        raise ValueError(f"subset.fraction must be in (0, 1], got {fraction}")
    available = np.bincount(frame.label.to_numpy(), minlength=n_classes)[:n_classes]
    if per_class is not None:
        counts = [per_class] * n_classes
    else:
        counts = [max(1, round(fraction * n)) for n in available]
    return draw_counts(frame, counts, seed, threads, names)


def draw_counts(
    frame: pd.DataFrame, counts: list[int], seed: int, threads: int = 1, names: list[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Draw ``counts[c]`` readable images of each class c at random; return (drawn, rest, unreadable).

    Only drawn images are decoded (a dataset can be large): an unreadable one is listed
    with its reason and replaced by a further random image of its class.
    """
    rng = np.random.default_rng(seed)
    # Sorting first makes the draw independent of the manifest's row order.
    frame = frame.sort_values("path", kind="stable").reset_index(drop=True)
    labels = frame.label.to_numpy()
    paths = frame.path.to_numpy()
    chosen, broken, why = [], [], []
    for label, want in enumerate(counts):
        rows = np.flatnonzero(labels == label)
        named = f"class {label}" + (f" ({names[label]})" if names else "")
        if len(rows) < want:
            raise ValueError(f"{named} has {len(rows)} training images, fewer than the {want} the draw asks for")
        candidates = rng.choice(rows, size=want, replace=False)
        spare = None
        good: list[int] = []
        while True:
            for row, reason in zip(candidates, reasons(paths[candidates], threads)):
                if reason is None:
                    good.append(int(row))
                else:
                    broken.append(int(row))
                    why.append(reason)
            if len(good) == want:
                break
            if spare is None:  # only a class with broken images draws further
                spare = rng.permutation(np.setdiff1d(rows, candidates))
            if len(spare) == 0:
                raise ValueError(
                    f"{named} has {len(good)} readable training images, fewer than the {want} "
                    f"the draw asks for ({len(rows) - len(good)} cannot be read)"
                )
            candidates, spare = spare[: want - len(good)], spare[want - len(good) :]
        chosen.append(np.asarray(good, dtype=int))
    drawn = np.zeros(len(frame), dtype=bool)
    drawn[np.concatenate(chosen)] = True
    unreadable = np.zeros(len(frame), dtype=bool)
    unreadable[broken] = True
    return (
        frame[drawn].reset_index(drop=True),
        frame[~drawn & ~unreadable].reset_index(drop=True),
        unreadable_frame(frame.iloc[broken], why),
    )


def read_file_list(path: str) -> list[str]:
    """The entries of a file list, one a line (blank lines skipped); a repeated entry is an error."""
    with open(path) as handle:
        entries = [line.strip().replace("\\", "/").removeprefix("./") for line in handle]
    entries = [entry for entry in entries if entry]
    if not entries:
        raise ValueError(f"subset.file_list {path} lists no file")
    repeated = pd.Series(entries)[pd.Series(entries).duplicated()].unique().tolist()
    if repeated:
        raise ValueError(f"subset.file_list {path} lists {_some(repeated)} more than once")
    return entries


def _some(items: list[str], shown: int = 5) -> str:
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def pick_listed(
    frame: pd.DataFrame,
    entries: list[str],
    n_classes: int,
    threads: int = 1,
    names: list[str] | None = None,
    source: str = "the file list",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return (listed, rest, unreadable): the training images the entries name, each by its
    file name or its path's last components, and the others. Every entry must name exactly
    one readable training image, and every class must have one."""
    parts = [path.replace("\\", "/").split("/") for path in frame.path]
    by_tail: dict[str, list[int]] = {}
    for depth in sorted({entry.count("/") + 1 for entry in entries}):
        for row, components in enumerate(parts):
            by_tail.setdefault("/".join(components[-depth:]), []).append(row)
    missing = [entry for entry in entries if entry not in by_tail]
    if missing:
        raise ValueError(
            f"subset.file_list {source}: {len(missing)} listed file(s) are not in the training set: "
            f"{_some(missing)} (is each one's class in dataset.classes?)"
        )
    ambiguous = [entry for entry in entries if len(by_tail[entry]) > 1]
    if ambiguous:
        example = ambiguous[0]
        paths = frame.path.iloc[by_tail[example]].tolist()
        raise ValueError(
            f"subset.file_list {source}: {example} names {len(paths)} training images ({_some(paths, 2)}); "
            "list such files by their path relative to the class folders' parent"
        )
    rows = [by_tail[entry][0] for entry in entries]
    if len(set(rows)) != len(rows):
        twice = frame.path.iloc[pd.Series(rows)[pd.Series(rows).duplicated()].tolist()].tolist()
        raise ValueError(f"subset.file_list {source}: two entries name the same training image {_some(twice)}")
    listed = frame.iloc[rows]
    why = reasons(listed.path, threads)
    broken = [f"{path} ({reason})" for path, reason in zip(listed.path, why) if reason is not None]
    if broken:
        raise ValueError(f"subset.file_list {source}: {len(broken)} listed file(s) cannot be read: {_some(broken)}")
    empty = sorted(set(range(n_classes)) - set(listed.label))
    if empty:
        shown = [f"{label}" + (f" ({names[label]})" if names else "") for label in empty]
        raise ValueError(f"subset.file_list {source}: no listed file of class(es) {_some(shown)}")
    chosen = np.zeros(len(frame), dtype=bool)
    chosen[rows] = True
    listed = frame[chosen].sort_values("path", kind="stable").reset_index(drop=True)
    rest = frame[~chosen].sort_values("path", kind="stable").reset_index(drop=True)
    return listed, rest, unreadable_frame(frame.iloc[[]], [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="the manifest to draw from")
    parser.add_argument("--classes", required=True)
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--per-class", type=int)
    size.add_argument("--fraction", type=float)
    size.add_argument("--file-list", help="take exactly the training images this file names, one a line")
    size.add_argument("--like", help="draw as many images per class as this manifest has (times --times)")
    parser.add_argument("--times", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rest", help="also write the images left out of the draw")
    parser.add_argument("--unreadable", help="also write the drawn images that could not be read, and why")
    parser.add_argument("--threads", type=int, default=1, help="images decoded at once while checking them")
    args = parser.parse_args(argv)
    start_logging()
    classes = read_classes(args.classes)
    frame = read_manifest(args.manifest)
    if args.like:
        counts = [args.times * n for n in class_quotas(read_manifest(args.like), len(classes))]
        subset, rest, unreadable = draw_counts(frame, counts, args.seed, args.threads, classes)
    elif args.file_list:
        entries = read_file_list(args.file_list)
        subset, rest, unreadable = pick_listed(frame, entries, len(classes), args.threads, classes, args.file_list)
    else:
        subset, rest, unreadable = draw_subset(
            frame, len(classes), args.seed, args.per_class, args.fraction, args.threads, classes
        )
    write_manifest(args.out, subset)
    if args.rest:
        write_manifest(args.rest, rest)
    if args.unreadable:
        write_unreadable(args.unreadable, unreadable)
    log.info("drew %d images over %d classes into %s", len(subset), len(classes), args.out)


if __name__ == "__main__":
    run(main)
