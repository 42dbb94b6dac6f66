"""Build the mini-world's data: scikit-learn's scanned digits as target dataset,
validation set and a noisy captioned pool that stands in for LAION, and a shifted
evaluation set (``val_web``): the validation digits with the pool's web-like perturbations.

Every image is a real scan from ``sklearn.datasets.load_digits``. The split is
stratified and seeded: validation images never enter the pool, the target's
training reservoir is clean, and the pool carries web-like perturbations, a share
of wrong captions and some distractor images with no digit at all.

    python -m augbench.miniworld.data --out resources/miniworld --image-size 16 ...
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

from augbench.cli import run, start_logging
from augbench.files import save_image, write_classes, write_manifest

CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# Alt-text-like captions. As on LAION, some read like the study's class prompt
# ("a photo of a {}"), most do not.
CAPTION_TEMPLATES = [
    "a photo of a {}",
    "handwritten digit {}",
    "the number {} written by hand",
    "{}",
    "a scan of a handwritten {}",
    "digit {} on a form",
    "a picture of the numeral {}",
    "{} - scanned postcode digit",
    "close-up of a {} in pen",
]
DISTRACTOR_CAPTIONS = [
    "abstract background",
    "stock photo texture",
    "a blurry picture",
    "logo",
    "pattern wallpaper",
    "untitled",
]

log = logging.getLogger(__name__)


def split_digits(n_val_per_class: int, n_train_per_class: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split the digits into ``val``, ``train`` (target reservoir) and ``pool``, per class."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    parts = {"val": [], "train": [], "pool": []}
    for label in range(len(CLASS_NAMES)):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        if len(indices) <= n_val_per_class + n_train_per_class:
            raise ValueError(
                f"class {CLASS_NAMES[label]!r} has {len(indices)} scans, fewer than "
                f"n_val_per_class + n_train_per_class = {n_val_per_class + n_train_per_class} "
                "plus at least one for the pool"
            )
        parts["val"].append(indices[:n_val_per_class])
        parts["train"].append(indices[n_val_per_class : n_val_per_class + n_train_per_class])
        parts["pool"].append(indices[n_val_per_class + n_train_per_class :])
    out = {}
    for name, chunks in parts.items():
        chosen = np.concatenate(chunks)
        out[name] = (digits.images[chosen], digits.target[chosen])
    return out


def render_clean(scan: np.ndarray, image_size: int) -> Image.Image:
    """A scan as a dark-ink-on-white RGB image, as a scanner would deliver it."""
    ink = scan / 16.0
    gray = Image.fromarray(np.uint8(255 * (1.0 - ink)), mode="L")
    return gray.resize((image_size, image_size), Image.BILINEAR).convert("RGB")


def render_web(scan: np.ndarray, image_size: int, rng: np.random.Generator) -> Image.Image:
    """A scan as it might appear on the web: recoloured, moved, noisy, compressed."""
    ink = Image.fromarray(np.uint8(255 * scan / 16.0), mode="L")
    ink = ink.resize((image_size, image_size), Image.BILINEAR)
    scale = rng.uniform(0.8, 1.1)
    shift = rng.uniform(-0.12, 0.12, size=2) * image_size
    ink = ink.rotate(
        rng.uniform(-15, 15),
        resample=Image.BILINEAR,
        translate=tuple(shift),
    )
    if abs(scale - 1) > 1e-3:
        size = max(4, round(image_size * scale))
        small = ink.resize((size, size), Image.BILINEAR)
        canvas = Image.new("L", (image_size, image_size))
        canvas.paste(small, ((image_size - size) // 2, (image_size - size) // 2))
        ink = canvas
    if rng.random() < 0.3:
        ink = ink.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 0.8)))
    background, foreground = _contrasting_colours(rng)
    alpha = np.asarray(ink, dtype=np.float32)[..., None] / 255.0
    pixels = (1 - alpha) * background + alpha * foreground
    pixels += rng.normal(0, rng.uniform(0, 10), size=pixels.shape)
    return Image.fromarray(np.uint8(np.clip(pixels, 0, 255)), mode="RGB")


def render_distractor(image_size: int, rng: np.random.Generator) -> Image.Image:
    """An image with no digit: smooth colour blobs and noise, like web clutter."""
    coarse = rng.uniform(0, 255, size=(3, 3, 3)).astype(np.uint8)
    image = Image.fromarray(coarse, mode="RGB").resize((image_size, image_size), Image.BICUBIC)
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 20, size=(image_size, image_size, 3))
    return Image.fromarray(np.uint8(np.clip(pixels, 0, 255)), mode="RGB")


def _contrasting_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(background, ink): a tinted light paper with dark ink, or now and then the reverse."""
    light = 255 - rng.uniform(0, 90, size=3)
    dark = rng.uniform(0, 110, size=3)
    return (dark, light) if rng.random() < 0.2 else (light, dark)


def caption_for(label: int, wrong_caption_rate: float, rng: np.random.Generator) -> str:
    """A caption from a random template; with ``wrong_caption_rate`` it names another class."""
    named = label
    if rng.random() < wrong_caption_rate:
        named = int(rng.choice([c for c in range(len(CLASS_NAMES)) if c != label]))
    template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
    return template.format(CLASS_NAMES[named])


def build(
    out: str | Path,
    image_size: int = 16,
    n_val_per_class: int = 50,
    n_train_per_class: int = 30,
    pool_copies: int = 3,
    wrong_caption_rate: float = 0.2,
    distractor_rate: float = 0.1,
    seed: int = 0,
) -> dict[str, int]:
    """Write ``classes.txt`` and the ``train``, ``val``, ``pool`` and ``val_web`` manifests under ``out``.

    The pool's ``true_label`` column is hidden ground truth for measuring retrieval
    precision; no method reads it.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    parts = split_digits(n_val_per_class, n_train_per_class, seed)
    counts = {}
    for name in ("train", "val"):
        scans, labels = parts[name]
        rows = []
        for i, (scan, label) in enumerate(zip(scans, labels)):
            path = out / name / "images" / f"{i:05d}.png"
            save_image(path, render_clean(scan, image_size))
            rows.append({"path": str(path), "label": int(label)})
        write_manifest(out / name / "manifest.csv", pd.DataFrame(rows))
        counts[name] = len(rows)

    scans, labels = parts["pool"]
    rows = []
    for _ in range(pool_copies):
        for scan, label in zip(scans, labels):
            path = out / "pool" / "images" / f"{len(rows):06d}.png"
            save_image(path, render_web(scan, image_size, rng))
            caption = caption_for(int(label), wrong_caption_rate, rng)
            rows.append({"path": str(path), "label": -1, "caption": caption, "true_label": int(label)})
    n_distractors = round(distractor_rate * len(rows) / max(1e-9, 1 - distractor_rate))
    for _ in range(n_distractors):
        path = out / "pool" / "images" / f"{len(rows):06d}.png"
        save_image(path, render_distractor(image_size, rng))
        caption = DISTRACTOR_CAPTIONS[rng.integers(len(DISTRACTOR_CAPTIONS))]
        rows.append({"path": str(path), "label": -1, "caption": caption, "true_label": -1})
    order = rng.permutation(len(rows))
    write_manifest(out / "pool" / "manifest.csv", pd.DataFrame(rows).iloc[order])
    counts["pool"] = len(rows)

    # The validation scans as the pool shows digits: a shift from the clean scans the classifier
    # is trained and validated on. Its own random stream, so the pool is what it was without it.
    web_rng = np.random.default_rng([seed, 1])
    scans, labels = parts["val"]
    rows = []
    for i, (scan, label) in enumerate(zip(scans, labels)):
        path = out / "val_web" / "images" / f"{i:05d}.png"
        save_image(path, render_web(scan, image_size, web_rng))
        rows.append({"path": str(path), "label": int(label)})
    write_manifest(out / "val_web" / "manifest.csv", pd.DataFrame(rows))
    counts["val_web"] = len(rows)
    write_classes(out / "classes.txt", CLASS_NAMES)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the mini-world's data into")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--n-val-per-class", type=int, default=50)
    parser.add_argument("--n-train-per-class", type=int, default=30)
    parser.add_argument("--pool-copies", type=int, default=3)
    parser.add_argument("--wrong-caption-rate", type=float, default=0.2)
    parser.add_argument("--distractor-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start_logging()
    counts = build(
        args.out,
        image_size=args.image_size,
        n_val_per_class=args.n_val_per_class,
        n_train_per_class=args.n_train_per_class,
        pool_copies=args.pool_copies,
        wrong_caption_rate=args.wrong_caption_rate,
        distractor_rate=args.distractor_rate,
        seed=args.seed,
    )
    log.info("mini-world written to %s: %s", args.out, counts)


if __name__ == "__main__":
    run(main)
