"""The CLIP-score quality filter of retrieved and generated images.

An image's CLIP score is the cosine similarity between its CLIP image embedding and
the CLIP text embedding of its class prompt. A method's ``min_clip_score`` is one
threshold for every class; ``min_clip_score_file`` is a TSV, a line per class
(``<class name or folder><TAB><threshold>``, ``#`` starts a comment), whose values
replace ``min_clip_score`` for the classes it lists. Without ``min_clip_score`` the
file must list every class.

Each filtering job writes a small table (``quality.csv``: label, class, min_clip_score,
kept, dropped) that the run's summary counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from augbench.files import atomic_path, read_class_folders, read_classes

QUALITY_COLUMNS = ["label", "class", "min_clip_score", "kept", "dropped"]


def _threshold(value: float, where: str) -> float:
    if not -1 <= value <= 1:
        raise ValueError(f"{where}: a CLIP score threshold is a cosine similarity in [-1, 1], got {value}")
    return value


def class_thresholds(
    classes_path: str, min_clip_score: float | None = None, min_clip_score_file: str | None = None
) -> np.ndarray | None:
    """Each class's minimum CLIP score (label order), or None when no threshold is set."""
    if min_clip_score is None and min_clip_score_file is None:
        return None
    names = read_classes(classes_path)
    folders = read_class_folders(classes_path)
    label_of = {**{folder: label for label, folder in enumerate(folders)}, **{n: i for i, n in enumerate(names)}}
    default = np.nan if min_clip_score is None else _threshold(float(min_clip_score), "min_clip_score")
    thresholds = np.full(len(names), default, dtype=np.float64)
    if min_clip_score_file is None:
        return thresholds
    given: set[int] = set()
    with open(min_clip_score_file) as handle:
        for number, line in enumerate(handle, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            where = f"min_clip_score_file {min_clip_score_file} line {number}"
            name, tab, value = text.rpartition("\t")
            if not tab:
                raise ValueError(f"{where}: expected '<class><TAB><threshold>', got {text!r}")
            name = name.strip()
            if name not in label_of:
                raise ValueError(f"{where}: {name!r} is not a class of {classes_path}")
            try:
                score = float(value)
            except ValueError:
                raise ValueError(f"{where}: threshold {value.strip()!r} of {name!r} is not a number") from None
            label = label_of[name]
            if label in given:
                raise ValueError(f"{where}: class {names[label]!r} is given a threshold twice")
            given.add(label)
            thresholds[label] = _threshold(score, where)
    missing = [names[label] for label in np.flatnonzero(np.isnan(thresholds))]
    if missing:
        raise ValueError(
            f"min_clip_score_file {min_clip_score_file} has no threshold for {len(missing)} class(es) "
            f"{missing[:10]}: list every class, or set min_clip_score for the classes it leaves out"
        )
    return thresholds


def read_class_features(path: str, classes: list[str]) -> np.ndarray:
    """The class prompts' CLIP text embeddings (``augbench.embed prompts``), a row per class."""
    features = np.load(path).astype(np.float32)
    if len(features) != len(classes):
        raise ValueError(f"{path} has {len(features)} class prompt embeddings but the class list has {len(classes)}")
    return features


def clip_scores(image_features: np.ndarray, class_features: np.ndarray, labels) -> np.ndarray:
    """Cosine similarity of each image's embedding with its class prompt's (both L2-normalised)."""
    labels = np.asarray(labels, dtype=int)
    return np.einsum("ij,ij->i", np.asarray(image_features, np.float32), class_features[labels]).astype(np.float64)


def pool_filter(
    image_embeddings: np.ndarray, rows: np.ndarray, class_features: np.ndarray, thresholds: np.ndarray
) -> Callable[[int, int], bool]:
    """Whether the index's row ``i`` (the pool's ``rows[i]``) reaches class ``c``'s threshold; each
    pair is scored once, from the (possibly memory-mapped) image embeddings."""
    known: dict[tuple[int, int], bool] = {}

    def accept(row: int, label: int) -> bool:
        key = (row, label)
        if key not in known:
            vector = np.asarray(image_embeddings[rows[row]], dtype=np.float32)
            known[key] = float(vector @ class_features[label]) >= thresholds[label]
        return known[key]

    return accept


def write_quality(path: str, classes: list[str], thresholds, kept, dropped) -> pd.DataFrame:
    """The per-class table of a method's filter; an empty threshold means no filter."""
    table = pd.DataFrame(
        {
            "label": range(len(classes)),
            "class": classes,
            "min_clip_score": [np.nan] * len(classes) if thresholds is None else thresholds,
            "kept": np.asarray(kept, dtype=int),
            "dropped": np.asarray(dropped, dtype=int),
        },
        columns=QUALITY_COLUMNS,
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def quality_of_generated(frame: pd.DataFrame, classes: list[str]) -> tuple[list[float], list[int], list[int]]:
    """Thresholds, kept and dropped images per class from generated images' manifest rows: an
    image in its ``attempt``-th regeneration replaced that many images below the threshold."""
    n = len(classes)
    kept = np.bincount(frame.label.to_numpy(dtype=int), minlength=n)[:n] if len(frame) else np.zeros(n, int)
    if "attempt" not in frame:
        return [math.nan] * n, kept.tolist(), [0] * n
    dropped = np.bincount(frame.label, weights=frame.attempt, minlength=n)[:n].astype(int)
    thresholds = frame.groupby("label").min_clip_score.first().reindex(range(n)).tolist()
    return thresholds, kept.tolist(), dropped.tolist()
