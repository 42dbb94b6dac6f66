"""Calibrate a copy check's threshold to the CLIP in use (``contamination.*_threshold: auto``).

    python -m augbench.copy_calibration --manifest val.csv --embeddings val.npy \
        --model local-dir:resources/miniworld/models/clip --catch-share 0.99 --images 200 \
        --out contamination/eval_threshold.json

How close a copy of an image lies to it in CLIP space depends on the CLIP: 0.95 suits
OpenCLIP ViT-L/14, while the mini-world's tiny CLIP scores rescaled copies of its
16-pixel digits as low as 0.93 and distinct digits up to 0.90. So the threshold is measured
on the reference images themselves (the validation images, or the training subset):

- a seeded sample of ``images`` of them gets the copies a pool might hold of each
  (``TRANSFORMS``: re-encoded as JPEG at quality 50, shrunk to half, enlarged twice, cropped to
  90% of each side; ``transforms`` picks some), written as files and embedded with the CLIP
  (``augbench.clip_settings.encode_images``);
- each copy scores its cosine similarity to its original's embedding (the reference
  embeddings the workflow made); the threshold is the highest that catches ``catch_share``
  of the copies (``catching_threshold``);
- the false-positive rate is the share of pairs of distinct reference images (every pair,
  or a seeded sample of ``pairs``) at or above it: how often it would call two different
  images copies; and since a pool image is screened against every reference image, the share
  of reference images (all, or a seeded sample of ``probed``) that have another one at or above it
  (``false_positive_images``) is about the share of distinct pool images like them that the
  screen would leave out.

The JSON (``augbench.copies.read_calibration`` reads it for the screening jobs, the summary
reports it): ``threshold``, ``target_catch_share``, ``catch_share`` (achieved),
``catch_by_transform``, ``copies``, ``sampled_images``, ``lowest_copy_similarity``,
``false_positive_rate``, ``pairs``, ``highest_distinct_similarity``, ``false_positive_images``,
``images_probed``, ``reference_images``,
``references`` (the manifest), ``model`` and ``pretrained``.
"""

from __future__ import annotations

import argparse
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from augbench.cli import add_settings, comma_separated, run, setting, settings_from, start_logging, use_threads
from augbench.clip_settings import ImageEmbedding, encode_images
from augbench.copies import at_or_above
from augbench.files import read_manifest, write_json
from augbench.images import load_rgb

log = logging.getLogger(__name__)

# A copy as the web repeats an image: re-compressed, resized either way, cropped a little.
JPEG_QUALITY = 50
SHRINK = 0.5
ENLARGE = 2.0
CROP_SIDE = 0.9  # of each side, at a seeded offset
PAIR_BLOCK = 16_384  # pairs scored at once (bounds the memory of a large sample)


def _resized(image: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.BICUBIC)


def _cropped(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    width, height = max(1, round(image.width * CROP_SIDE)), max(1, round(image.height * CROP_SIDE))
    left = int(rng.integers(image.width - width + 1))
    top = int(rng.integers(image.height - height + 1))
    return image.crop((left, top, left + width, top + height))


# name -> (the copy of an image, the format it is saved in); a JPEG's loss is the copy itself.
TRANSFORMS: dict[str, tuple[Callable[[Image.Image, np.random.Generator], Image.Image], str]] = {
    "jpeg": (lambda image, rng: image, "jpg"),
    "shrunk": (lambda image, rng: _resized(image, SHRINK), "png"),
    "enlarged": (lambda image, rng: _resized(image, ENLARGE), "png"),
    "cropped": (_cropped, "png"),
}


@dataclass
class CopyCalibration:
    """How a threshold is calibrated: the share of copies it must catch, and how many images and pairs are drawn."""

    catch_share: float = setting(
        0.99, help="share of the planted copies the threshold catches, in (0, 1]", config="contamination.catch_share"
    )
    images: int = setting(
        200, help="reference images given copies (all, where fewer)", config="contamination.calibration_images"
    )
    # One comma-separated word on the command line, as the rule writes the config's list.
    transforms: tuple[str, ...] = setting(
        tuple(TRANSFORMS),
        help=f"comma-separated kinds of copy planted, of {', '.join(TRANSFORMS)}",
        config="contamination.copy_transforms",
        parse=comma_separated,
    )
    pairs: int = setting(200_000, help="pairs of distinct reference images compared at most (all, where fewer)")
    # Every image where there are few: a handful of near-twins among many images is missed by a small sample.
    probed: int = setting(
        20_000, help="reference images probed for a distinct image at or above the threshold (all, where fewer)"
    )
    seed: int = setting(0, help="seed of the sampled images, crops and pairs")

    def check(self) -> None:
        if not 0 < self.catch_share <= 1:
            raise ValueError(f"the catch share must be in (0, 1], not {self.catch_share}")
        if self.images < 1:
            raise ValueError(f"the images that get copies must be at least 1, not {self.images}")
        unknown = sorted(set(self.transforms) - set(TRANSFORMS))
        if unknown or not self.transforms:
            raise ValueError(
                f"the kinds of copy planted must be some of {list(TRANSFORMS)}, not {list(self.transforms)}"
            )
        if self.pairs < 1:
            raise ValueError(f"the pairs of distinct images compared must be at least 1, not {self.pairs}")


def catching_threshold(similarity: np.ndarray, share: float) -> float:
    """The highest threshold that at least ``share`` of ``similarity`` reaches."""
    if not 0 < share <= 1:
        raise ValueError(f"the catch share must be in (0, 1], not {share}")
    if len(similarity) == 0:
        raise ValueError("no copy similarities to calibrate a threshold on")
    ordered = np.sort(np.asarray(similarity, dtype=np.float64))[::-1]
    caught = max(1, math.ceil(share * len(ordered) - 1e-9))  # the product may land a rounding error above
    return float(ordered[caught - 1])


def distinct_pairs(count: int, limit: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows (i, j), i != j, of ``count`` images: every pair once where there are at most ``limit``,
    else ``limit`` pairs drawn uniformly."""
    if count < 2:
        raise ValueError(f"distinct pairs need at least 2 images, not {count}")
    if count * (count - 1) // 2 <= limit:
        return np.triu_indices(count, k=1)
    first = rng.integers(count, size=limit)
    second = rng.integers(count - 1, size=limit)
    return first, second + (second >= first)  # skips i itself: uniform over the others


def pair_similarities(embeddings: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The cosine similarity of each pair (rows of unit vectors), scored block by block."""
    scores = np.empty(len(first), dtype=np.float32)
    for start in range(0, len(first), PAIR_BLOCK):
        block = slice(start, start + PAIR_BLOCK)
        scores[block] = np.einsum("ij,ij->i", embeddings[first[block]], embeddings[second[block]])
    return scores


def nearest_other(references: np.ndarray, probes: np.ndarray) -> np.ndarray:
    """Each probe's (a row of ``references``) highest similarity to another reference image."""
    nearest = np.empty(len(probes), dtype=np.float32)
    for start in range(0, len(probes), 256):
        rows = probes[start : start + 256]
        scores = references[rows] @ references.T
        scores[np.arange(len(rows)), rows] = -np.inf
        nearest[start : start + len(rows)] = scores.max(axis=1)
    return nearest


def calibrate(
    copy_similarity: np.ndarray,
    copy_transforms: list[str],
    references: np.ndarray,
    settings: CopyCalibration | None = None,
    probes: np.ndarray | None = None,
) -> dict:
    """The threshold that catches ``settings.catch_share`` of the copies (``copy_similarity``, each
    the similarity of a copy made by ``copy_transforms``' transform to its original), what it
    catches per transform, the share of pairs of distinct ``references`` (unit embeddings) at or
    above it, and the share of ``probes`` (rows of ``references``; default all) with another
    reference at or above it: the share of distinct images a screen would leave out, as a
    pool image is screened against every reference image."""
    settings = settings or CopyCalibration()
    settings.check()
    if len(copy_similarity) != len(copy_transforms):
        raise ValueError(f"{len(copy_similarity)} copy similarities but {len(copy_transforms)} transforms named")
    threshold = catching_threshold(copy_similarity, settings.catch_share)
    if threshold <= 0:
        raise ValueError(
            f"the threshold that catches {settings.catch_share:.0%} of the copies is {threshold:.4f}: this CLIP "
            "does not tell copies of an image from other images; set contamination.*_threshold to a number"
        )
    caught = at_or_above(copy_similarity, threshold)
    transforms = np.asarray(copy_transforms)
    first, second = distinct_pairs(len(references), settings.pairs, np.random.default_rng(settings.seed))
    references = np.asarray(references, dtype=np.float32)
    distinct = pair_similarities(references, first, second)
    probes = np.arange(len(references)) if probes is None else np.asarray(probes)
    neighbours = nearest_other(references, probes)
    return {
        "threshold": threshold,
        "target_catch_share": settings.catch_share,
        "catch_share": float(caught.mean()),
        "catch_by_transform": {
            str(name): float(caught[transforms == name].mean()) for name in dict.fromkeys(transforms)
        },
        "copies": len(copy_similarity),
        "lowest_copy_similarity": float(np.min(copy_similarity)),
        "false_positive_rate": float(at_or_above(distinct, threshold).mean()),
        "pairs": len(distinct),
        "highest_distinct_similarity": float(distinct.max()),
        "false_positive_images": float(at_or_above(neighbours, threshold).mean()),
        "images_probed": len(probes),
        "reference_images": len(references),
    }


def plant_copies(
    paths: list[str], folder: Path, rng: np.random.Generator, transforms: tuple[str, ...] = tuple(TRANSFORMS)
) -> tuple[list[str], list[int], list[str]]:
    """Write a copy of each image by each of ``transforms`` into ``folder``: (copy files, the index
    into ``paths`` of each one's original, each one's transform); ``rng`` places the crops."""
    files, originals, names = [], [], []
    for index, path in enumerate(paths):
        image = load_rgb(path)
        for name in transforms:
            transform, extension = TRANSFORMS[name]
            copy_path = folder / f"{index}_{name}.{extension}"
            copy = transform(image, rng)
            if extension == "jpg":
                copy.save(copy_path, "JPEG", quality=JPEG_QUALITY)
            else:
                copy.save(copy_path)
            files.append(str(copy_path))
            originals.append(index)
            names.append(name)
    return files, originals, names


def calibrate_copies(
    manifest: str, embeddings: str, out: str, clip: ImageEmbedding, settings: CopyCalibration | None = None
) -> dict:
    """Calibrate a copy check on the reference images of ``manifest`` (their CLIP embeddings,
    made by ``clip``, in ``embeddings``) and write the JSON ``out``; return what it holds."""
    settings = settings or CopyCalibration()
    settings.check()
    references = read_manifest(manifest)
    vectors = np.load(embeddings).astype(np.float32)
    if len(vectors) != len(references):
        raise ValueError(f"{embeddings} has {len(vectors)} rows but {manifest} lists {len(references)} images")
    # An unreadable image's row is zero: it has no copies to score, and no pair to compare.
    readable = np.flatnonzero(np.linalg.norm(vectors, axis=1) > 0.5)
    if len(readable) < 2:
        raise ValueError(
            f"{manifest} has {len(readable)} readable image(s); calibrating a copy threshold needs at least 2"
        )
    rng = np.random.default_rng(settings.seed)
    sampled = np.sort(rng.choice(readable, size=min(settings.images, len(readable)), replace=False))
    with tempfile.TemporaryDirectory(prefix="augbench-copies-") as folder:
        planted = references.path.to_numpy()[sampled].tolist()
        files, originals, transforms = plant_copies(planted, Path(folder), rng, settings.transforms)
        copies, reasons = encode_images(files, clip)
    broken = [reason for reason in reasons if reason]
    if broken:
        raise ValueError(f"a planted copy could not be read back: {broken[0]}")
    if copies.shape[1] != vectors.shape[1]:
        raise ValueError(
            f"{clip.model} embeds in {copies.shape[1]} dimensions but {embeddings} holds {vectors.shape[1]}: "
            "the reference embeddings were made by another CLIP"
        )
    similarity = np.einsum("ij,ij->i", copies, vectors[sampled[originals]])
    # Rows of the readable images probed for a distinct near neighbour: all, or a seeded sample.
    probes = np.arange(len(readable))
    if len(probes) > settings.probed:
        probes = np.sort(rng.choice(len(readable), size=settings.probed, replace=False))
    result = calibrate(similarity, transforms, vectors[readable], settings, probes)
    result |= {"sampled_images": len(sampled), "references": manifest, "model": clip.model}
    result["pretrained"] = clip.pretrained
    write_json(out, result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", required=True, help="manifest of the reference images (validation or training)")
    parser.add_argument("--embeddings", required=True, help=".npy of their CLIP image embeddings, made by --model")
    parser.add_argument("--out", required=True, help="JSON of the calibrated threshold")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    add_settings(parser, CopyCalibration)
    add_settings(parser, ImageEmbedding)
    args = parser.parse_args(argv)
    start_logging()
    use_threads(args.threads)
    result = calibrate_copies(
        args.manifest,
        args.embeddings,
        args.out,
        settings_from(args, ImageEmbedding),
        settings_from(args, CopyCalibration),
    )
    log.info(
        "threshold %.4f catches %.1f%% of %d planted copies (%s); %.3f%% of %d distinct pairs reach it, "
        "%.2f%% of %d images have another image at or above it; wrote %s",
        result["threshold"],
        100 * result["catch_share"],
        result["copies"],
        ", ".join(f"{name} {100 * share:.0f}%" for name, share in result["catch_by_transform"].items()),
        100 * result["false_positive_rate"],
        result["pairs"],
        100 * result["false_positive_images"],
        result["images_probed"],
        args.out,
    )


if __name__ == "__main__":
    run(main)
