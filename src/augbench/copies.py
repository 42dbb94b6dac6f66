"""Copies of evaluation and training images among candidate images, and the table of what is left out.

A candidate (a pool image, a downloaded one) whose CLIP image embedding has cosine
similarity at or above a threshold with some evaluation (or training) image is a
near-duplicate of it: adding it would put a test image into training (or add an image
the classifier already has). The reference images are few beside the candidates, so
they are the index (``augbench.search.build_index``), and the candidates, memory-mapped,
search it block by block for their single nearest neighbour. The index is exact up to
200,000 reference images (``augbench.search.choose_factory``); above, an inverted file:
approximate, but a near-copy lies so close to its original that the lists a search
visits almost always hold it.

The table of left-out candidates has a row per (candidate row, reason): ``pool_row``,
``path``, ``reason``, ``similarity`` (empty where no similarity applies, as for a safety
tag) and ``matched`` (the evaluation or training image matched, or the tag).
``augbench.exclude`` writes it for the pool, ``augbench.screen_downloads`` for downloads;
retrieval and the summary read it.

A check's threshold is a number, or (``contamination.*_threshold: auto``) the one that
``augbench.copy_calibration`` calibrated to the CLIP in use, read from its JSON
(:func:`read_calibration`).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from augbench.cli import add_settings, setting
from augbench.files import atomic_path, read_json, read_manifest
from augbench.search import BLOCK, build_index, release_pages

log = logging.getLogger(__name__)

COLUMNS = ["pool_row", "path", "reason", "similarity", "matched"]
# The reasons a row is left out.
EVAL_DUPLICATE = "evaluation duplicate"
TRAIN_DUPLICATE = "training duplicate"
SAFETY_TAG = "safety tag"
# The two copy checks by the name the config and the command lines give them (eval_threshold,
# --train-calibration), and the reason each writes.
CHECK_REASONS = {"eval": EVAL_DUPLICATE, "train": TRAIN_DUPLICATE}
# A float32 inner product of two equal unit vectors can fall a rounding error below 1.
ROUNDING = 1e-6


def at_or_above(similarity: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each similarity reaches ``threshold``, up to float32 rounding: the one test of a copy."""
    return np.asarray(similarity) >= threshold - ROUNDING


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
    rows = np.flatnonzero(at_or_above(similarity, threshold))
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


@dataclass
class CopyChecks:
    """From what similarity on a candidate copies an evaluation or training image, and the memory
    the index of those images may use; which images they are (manifests, embeddings) is the job's."""

    # Off unless asked, not contamination.*'s 0.95: the workflow passes the config's thresholds,
    # and leaves an option out where the config turns that check off (null) or calibrates it
    # (auto: the job gets --eval-calibration or --train-calibration instead).
    eval_threshold: float | None = setting(
        None, help="cosine similarity at or above which a candidate copies an evaluation image (None: no check)"
    )
    train_threshold: float | None = setting(
        None, help="cosine similarity at or above which a candidate copies a training image (None: no check)"
    )
    index_memory_gb: float = setting(
        16.0, help="memory the index of the evaluation or training images may use", config="pool.index_memory_gb"
    )


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


def read_calibration(path: str) -> dict:
    """A calibrated copy check (``augbench.copy_calibration``'s JSON), its threshold checked."""
    try:
        calibration = read_json(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"copy calibration {path} cannot be read: {error}") from None
    threshold = calibration.get("threshold") if isinstance(calibration, dict) else None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"copy calibration {path} holds no threshold in (0, 1] (got {threshold!r})")
    return calibration


def add_copy_check_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the two copy checks: the evaluation and training images, a calibrated
    threshold, and the ``CopyChecks``."""
    for name, what in (("eval", "evaluation (validation)"), ("train", "training")):
        parser.add_argument(f"--{name}-manifest", help=f"manifest of the {what} images")
        parser.add_argument(f"--{name}-embeddings", help=f".npy of the {what} images' CLIP image embeddings")
        parser.add_argument(
            f"--{name}-calibration",
            help=f"augbench.copy_calibration's JSON, whose threshold the {what} check takes (not with a threshold)",
        )
    add_settings(parser, CopyChecks)


REFERENCE_FILES = ("eval_manifest", "eval_embeddings", "eval_calibration")
REFERENCE_FILES += ("train_manifest", "train_embeddings", "train_calibration")


def reference_files(args: argparse.Namespace) -> dict[str, str | None]:
    """The evaluation and training images' files as the options of ``add_copy_check_arguments`` name them."""
    return {name: getattr(args, name) for name in REFERENCE_FILES}


def copy_checks(
    settings: CopyChecks,
    eval_manifest: str | None = None,
    eval_embeddings: str | None = None,
    train_manifest: str | None = None,
    train_embeddings: str | None = None,
    eval_calibration: str | None = None,
    train_calibration: str | None = None,
) -> list[CopyCheck]:
    """The copy checks turned on, each with its reference images: by a threshold ``settings`` gives,
    or by a calibration file whose threshold it takes."""
    files = {
        "eval": (eval_manifest, eval_embeddings, eval_calibration),
        "train": (train_manifest, train_embeddings, train_calibration),
    }
    checks = []
    for name, reason in CHECK_REASONS.items():
        manifest, embeddings, calibration = files[name]
        threshold = getattr(settings, f"{name}_threshold")
        if calibration is not None and threshold is not None:
            raise ValueError(f"give --{name}-threshold or --{name}-calibration, not both")
        if calibration is not None:
            threshold = read_calibration(calibration)["threshold"]
        if threshold is not None:
            checks.append(CopyCheck(reason, manifest, embeddings, threshold, f"--{name}"))
    return checks
