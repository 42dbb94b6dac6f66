"""Diagnostics of a method's added images in CLIP space: are their labels right, are they like
the real images, do they cover them, how diverse are they. One CSV row per method:

    python -m augbench.diagnostics method --method gen_classname \
        --added added/gen_classname/manifest.csv --added-embeddings embed/added/gen_classname.npy \
        --subset subset/train.csv --subset-embeddings embed/subset_images.npy \
        --val data/val_readable.csv --val-embeddings embed/val_images.npy \
        --class-prompts embed/class_prompts.npy --out diagnostics/gen_classname.csv
    python -m augbench.diagnostics join --part diagnostics/gen_classname.csv ... --out diagnostics.csv

Every embedding is an L2-normalised CLIP embedding with its rows in the order of its manifest,
as ``augbench.embed images`` writes them (the added images' too: ``augbench.embed images
--manifest added/<method>/manifest.csv``); ``--class-prompts`` is ``augbench.embed prompts``'
one text embedding per class. A zero row is an image the embedding could not read, and is left out.

The row's columns:

- ``label_agreement``: the share of added images whose CLIP zero-shot class (the class prompt
  of highest cosine) is the class they were added to; ``label_precision``: with ``--pool`` a
  pool manifest with hidden true classes (the mini-world's ``true_label``), the share of the
  added pool images whose true class is that class (empty for other methods and pools);
  ``clip_score``: their mean cosine with their class's prompt.
- ``fd_clip_train``, ``fd_clip_val``: the Fréchet distance between Gaussians fitted to the added
  images and to the real training subset (the validation images), all classes together;
  ``fd_clip_train_per_class``, ``fd_clip_val_per_class``: the same per class, averaged over the
  classes with at least two images on both sides. CLIP space, not Inception's (Kynkäänniemi et
  al. 2023), and a per-class covariance from fewer images than dimensions is singular: compare
  the numbers between methods of one run, not with published FIDs.
- ``precision``, ``recall``, ``density``, ``coverage`` (Naeem et al. 2020, ``k`` nearest
  neighbours) of the added images (fake) against the real training subset, computed by
  ``prdc``, its authors' package.
- ``vendi``: the Vendi score (Friedman and Dieng 2023, cosine kernel) of each class's added
  images, averaged over the classes: 1 when a class's images are all one image, at most their
  number; computed by ``vendi-score``, its authors' package.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg

from augbench.cli import add_settings, run, setting, settings_from, start_logging
from augbench.files import atomic_path, read_manifest
from augbench.pool_parts import TABLE_COLUMNS, read_shard_table
from augbench.quality import clip_scores

log = logging.getLogger(__name__)

COLUMNS = [
    "method",
    "n_added",
    "label_agreement",
    "label_precision",
    "clip_score",
    "fd_clip_train",
    "fd_clip_val",
    "fd_clip_train_per_class",
    "fd_clip_val_per_class",
    "precision",
    "recall",
    "density",
    "coverage",
    "vendi",
]


@dataclass
class Diagnostics:
    """How the diagnostics are computed."""

    nearest_k: int = setting(
        5, help="nearest neighbours of precision, recall, density and coverage", config="diagnostics.nearest_k"
    )
    prdc_samples: int = setting(
        10000,
        help="at most this many images of each side, drawn at random, enter precision, recall, density and "
        "coverage, whose distance matrices grow with the product of the two counts (Naeem et al. use 10,000)",
        config="diagnostics.prdc_samples",
    )
    fd_epsilon: float = setting(
        1e-6, help="added to the diagonal of both covariances of a Fréchet distance", config="diagnostics.fd_epsilon"
    )
    seed: int = setting(
        0, help="seed of the images drawn for precision, recall, density and coverage", config="diagnostics.seed"
    )


# -- label correctness -------------------------------------------------------------------


def zero_shot_classes(image_embeddings: np.ndarray, class_text_embeddings: np.ndarray) -> np.ndarray:
    """Each image's CLIP zero-shot class: the class prompt of highest cosine."""
    return (np.asarray(image_embeddings, np.float32) @ np.asarray(class_text_embeddings, np.float32).T).argmax(axis=1)


def label_agreement(image_embeddings: np.ndarray, labels, class_text_embeddings: np.ndarray) -> float:
    """The share of images whose zero-shot class is their label."""
    labels = np.asarray(labels, dtype=int)
    return float(np.mean(zero_shot_classes(image_embeddings, class_text_embeddings) == labels))


# The pool manifest's column of hidden true classes, which the mini-world knows (and a web pool does not).
TRUE_LABEL = "true_label"


def pool_truth(pool_manifest: str) -> pd.Series | None:
    """path -> true class of a pool with a ``true_label`` column; None for a pool without one (its
    header alone is read, so a web pool of millions of rows costs nothing). A shard table
    (``augbench.pool_parts``) stands for its parts, the first one's header read first."""
    parts = [pool_manifest]
    if pool_manifest.endswith(".csv") and set(TABLE_COLUMNS) <= set(_columns(pool_manifest)):
        parts = read_shard_table(pool_manifest).metadata.tolist()
    if not parts or not {"path", TRUE_LABEL} <= set(_columns(parts[0])):
        return None
    pool = pd.concat([_path_and_truth(part) for part in parts], ignore_index=True)
    return pool.drop_duplicates("path").set_index("path")[TRUE_LABEL].astype(int)


def _columns(manifest: str) -> list[str]:
    if manifest.endswith(".parquet"):
        import pyarrow.parquet

        return pyarrow.parquet.read_schema(manifest).names
    return pd.read_csv(manifest, nrows=0).columns.tolist()


def _path_and_truth(manifest: str) -> pd.DataFrame:
    if manifest.endswith(".parquet"):
        return pd.read_parquet(manifest, columns=["path", TRUE_LABEL])
    return pd.read_csv(manifest, usecols=["path", TRUE_LABEL], keep_default_na=False)


def label_precision(added: pd.DataFrame, truth: pd.Series | None) -> float:
    """The share of added pool images whose true class is the class they were added to (the pool's
    distractors, true class -1, count as wrong): how well ``label_agreement``, the CLIP proxy,
    tracks the truth. NaN without a known truth, or where no added image is a pool image."""
    if truth is None:
        return np.nan
    true_labels = added.path.map(truth)
    known = true_labels.notna()
    if not known.any():
        return np.nan
    return float(np.mean(true_labels[known].astype(int).to_numpy() == added.label[known].to_numpy()))


def clip_score(image_embeddings: np.ndarray, labels, class_text_embeddings: np.ndarray) -> float:
    """The images' mean cosine with their class's prompt."""
    return float(np.mean(clip_scores(image_embeddings, np.asarray(class_text_embeddings, np.float32), labels)))


# -- fidelity: Fréchet distance ------------------------------------------------------------


def frechet_distance_of_gaussians(mean_a, cov_a, mean_b, cov_b, epsilon: float = 1e-6) -> float:
    """``|mean_a - mean_b|² + Tr(cov_a + cov_b - 2 (cov_a cov_b)^½)``, with ``epsilon`` added to
    both covariances' diagonals.

    Embeddings of fewer images than dimensions have a singular covariance, whose product's square
    root is ill-conditioned; the small diagonal makes it well-defined. It is added always, not only
    where the root fails (as pytorch-fid does), so that classes are measured alike; it moves the
    distance by about ``epsilon`` times the dimension at most. The root of a product of two
    positive semi-definite matrices has real eigenvalues: what imaginary part rounding leaves is dropped.
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    offset = epsilon * np.eye(len(mean_a))
    cov_a, cov_b = np.asarray(cov_a, np.float64) + offset, np.asarray(cov_b, np.float64) + offset
    with warnings.catch_warnings():
        # Singular or ill-conditioned products are expected (see above); the result is checked below.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        raise ValueError("the square root of the covariances' product is not finite: raise the Fréchet epsilon")
    if np.iscomplexobj(root):
        trace = np.trace(root)
        if abs(trace.imag) > 1e-3 * max(abs(trace.real), 1e-12):
            log.warning("the covariances' root has a large imaginary part (trace %s); its real part is used", trace)
        root = root.real
    difference = mean_a - mean_b
    distance = difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root)
    # Rounding can take a distance of (almost) nothing below zero.
    return float(max(distance, 0.0))


def gaussian(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of a set of at least two embeddings."""
    embeddings = np.asarray(embeddings, np.float64)
    if len(embeddings) < 2:
        raise ValueError(f"a covariance needs at least two embeddings, got {len(embeddings)}")
    return embeddings.mean(axis=0), np.cov(embeddings, rowvar=False)


def frechet_distance(a: np.ndarray, b: np.ndarray, epsilon: float = 1e-6) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of embeddings (rows)."""
    return frechet_distance_of_gaussians(*gaussian(a), *gaussian(b), epsilon=epsilon)


def per_class_mean(
    measure: Callable[[np.ndarray, np.ndarray], float],
    a: np.ndarray,
    a_labels,
    b: np.ndarray,
    b_labels,
    min_per_class: int = 2,
) -> float:
    """The mean of ``measure`` over the classes with at least ``min_per_class`` rows in both sets (NaN: none has)."""
    a_labels, b_labels = np.asarray(a_labels, dtype=int), np.asarray(b_labels, dtype=int)
    values = []
    for label in np.intersect1d(a_labels, b_labels):
        in_a, in_b = a[a_labels == label], b[b_labels == label]
        if len(in_a) >= min_per_class and len(in_b) >= min_per_class:
            values.append(measure(in_a, in_b))
    return float(np.mean(values)) if values else float("nan")


def class_frechet_distance(a: np.ndarray, a_labels, b: np.ndarray, b_labels, epsilon: float = 1e-6) -> float:
    """The Fréchet distance per class, averaged over the classes with at least two rows on both sides."""
    return per_class_mean(lambda x, y: frechet_distance(x, y, epsilon), a, a_labels, b, b_labels)


# -- fidelity and coverage: precision, recall, density, coverage ---------------------------


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (Naeem et al. 2020):
    each point's ball reaches its ``k``-th nearest neighbour in its own set (Euclidean distance).
    Precision is the share of fake points in some real ball, recall the share of real points in
    some fake ball, density the mean number of real balls a fake point is in over ``k``, coverage
    the share of real balls holding a fake point."""
    from prdc import compute_prdc

    for name, points in (("real", real), ("fake", fake)):
        if len(points) <= k:
            raise ValueError(f"precision, recall, density and coverage with k={k} need over {k} {name} points")
    # compute_prdc prints the two counts; the job's log is stderr.
    with contextlib.redirect_stdout(io.StringIO()):
        values = compute_prdc(np.asarray(real, np.float32), np.asarray(fake, np.float32), nearest_k=k)
    return {name: float(values[name]) for name in ("precision", "recall", "density", "coverage")}


# -- diversity: Vendi score ----------------------------------------------------------------


def vendi_score(embeddings: np.ndarray) -> float:
    """The Vendi score with the cosine kernel: exp of the Shannon entropy of the eigenvalues of K/n,
    K the n × n matrix of cosines; from 1 (n copies of one image) to n (n orthogonal embeddings)."""
    from vendi_score import vendi

    embeddings = np.asarray(embeddings, np.float64)
    # The d × d dual matrix has K/n's non-zero eigenvalues; vendi normalises the rows (cosine kernel).
    return float(vendi.score_dual(embeddings, normalize=True))


def class_vendi_score(embeddings: np.ndarray, labels) -> float:
    """The Vendi score of each class's embeddings, averaged over the classes that have any."""
    labels = np.asarray(labels, dtype=int)
    return float(np.mean([vendi_score(embeddings[labels == label]) for label in np.unique(labels)]))


# -- one method's row ---------------------------------------------------------------------


@dataclass
class Embedded:
    """A set of images as the diagnostics see it: embeddings (rows) and labels."""

    embeddings: np.ndarray
    labels: np.ndarray


def read_embedded(manifest: str, embeddings: str) -> Embedded:
    """A manifest's labels and its images' embeddings, without the images that could not be read (zero rows)."""
    frame = read_manifest(manifest)
    features = np.load(embeddings).astype(np.float32)
    if len(features) != len(frame):
        raise ValueError(f"{embeddings} has {len(features)} rows but {manifest} lists {len(frame)} images")
    readable = np.linalg.norm(features, axis=1) > 0
    if not readable.all():
        log.warning("%d image(s) of %s have no embedding (unreadable) and are left out", (~readable).sum(), manifest)
    return Embedded(features[readable], frame.label.to_numpy(dtype=int)[readable])


def sample_rows(embeddings: np.ndarray, most: int, rng: np.random.Generator) -> np.ndarray:
    if len(embeddings) <= most:
        return embeddings
    return embeddings[np.sort(rng.choice(len(embeddings), size=most, replace=False))]


def diagnose(
    added: Embedded, train: Embedded, val: Embedded, class_text_embeddings: np.ndarray, settings: Diagnostics
) -> dict[str, float]:
    """Every diagnostic of one method's added images (see the module's description)."""
    if len(added.embeddings) == 0:
        log.warning("no added image has an embedding: every diagnostic is empty")
        return {column: np.nan for column in COLUMNS[2:]}
    for name, images in (("added", added), ("training", train), ("validation", val)):
        if len(images.labels) and images.labels.max() >= len(class_text_embeddings):
            raise ValueError(
                f"{name} images have label {images.labels.max()} but there are "
                f"{len(class_text_embeddings)} class prompt embeddings"
            )
    row = {
        "label_agreement": label_agreement(added.embeddings, added.labels, class_text_embeddings),
        "clip_score": clip_score(added.embeddings, added.labels, class_text_embeddings),
    }
    epsilon = settings.fd_epsilon
    for name, real in (("train", train), ("val", val)):
        enough = len(added.embeddings) >= 2 and len(real.embeddings) >= 2
        row[f"fd_clip_{name}"] = frechet_distance(added.embeddings, real.embeddings, epsilon) if enough else np.nan
        row[f"fd_clip_{name}_per_class"] = class_frechet_distance(
            added.embeddings, added.labels, real.embeddings, real.labels, epsilon
        )
    rng = np.random.default_rng(settings.seed)
    real = sample_rows(train.embeddings, settings.prdc_samples, rng)
    fake = sample_rows(added.embeddings, settings.prdc_samples, rng)
    if min(len(real), len(fake)) > settings.nearest_k:
        row |= prdc(real, fake, settings.nearest_k)
    else:
        log.warning(
            "precision, recall, density and coverage need over %d real and added images (have %d and %d)",
            settings.nearest_k,
            len(real),
            len(fake),
        )
        row |= dict.fromkeys(("precision", "recall", "density", "coverage"), np.nan)
    row["vendi"] = class_vendi_score(added.embeddings, added.labels)
    return row


def write_diagnostics(path: str, rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return table


def join_diagnostics(parts: list[str], out: str) -> pd.DataFrame:
    """The methods' rows in one table, in the order given."""
    rows = [row for part in parts for row in pd.read_csv(part).to_dict("records")]
    return write_diagnostics(out, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    method = commands.add_parser("method", help="the diagnostics of one method's added images, a row")
    method.add_argument("--method", required=True, help="the method's name, the row's first column")
    method.add_argument("--added", required=True, help="the method's added images (added/<method>/manifest.csv)")
    method.add_argument("--added-embeddings", required=True, help=".npy of the added images' CLIP embeddings")
    method.add_argument("--subset", required=True, help="the real training subset's manifest")
    method.add_argument("--subset-embeddings", required=True, help=".npy of its CLIP embeddings")
    method.add_argument("--val", required=True, help="the validation images' manifest")
    method.add_argument("--val-embeddings", required=True, help=".npy of their CLIP embeddings")
    method.add_argument("--class-prompts", required=True, help=".npy of the class prompts' CLIP text embeddings")
    method.add_argument(
        "--pool",
        help="the pool manifest (or shard table) retrieval searched; with a true_label column, "
        "label_precision is measured",
    )
    method.add_argument("--out", required=True, help="CSV to write, one row")
    add_settings(method, Diagnostics)
    join = commands.add_parser("join", help="the methods' rows in one table")
    join.add_argument("--part", action="append", required=True, help="a method's row (CSV); repeat, in order")
    join.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    start_logging()
    if args.command == "join":
        table = join_diagnostics(args.part, args.out)
        log.info("%d methods' diagnostics in %s", len(table), args.out)
        return
    settings = settings_from(args, Diagnostics)
    row = diagnose(
        read_embedded(args.added, args.added_embeddings),
        read_embedded(args.subset, args.subset_embeddings),
        read_embedded(args.val, args.val_embeddings),
        np.load(args.class_prompts).astype(np.float32),
        settings,
    )
    added = read_manifest(args.added)
    row["label_precision"] = label_precision(added, pool_truth(args.pool) if args.pool else None)
    # Every image the method added counts, the unreadable ones (left out of the diagnostics) too.
    table = write_diagnostics(args.out, [{"method": args.method, "n_added": len(added), **row}])
    log.info("diagnostics of %s:\n%s", args.method, table.to_string(index=False))


if __name__ == "__main__":
    run(main)
