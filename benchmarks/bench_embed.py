"""Images/s of the embed module (JPEG decoding, CLIP preprocessing, model) over the model's
forward throughput on preloaded tensors: same ViT-B/32-sized open_clip model (random
weights), same batch, 224 px. On a CPU machine decoding competes with the model for
the same cores.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MODEL, IMAGES, BATCH, WORKERS = "ViT-B-32", 192, 32, 2


def photos(folder: Path, count: int) -> list[str]:
    """JPEGs of camera-like size and content (smooth shapes and noise, not flat colour)."""
    rng = np.random.default_rng(0)
    paths = []
    y, x = np.mgrid[0:375, 0:500]
    for i in range(count):
        base = np.stack([np.sin(x / (20 + 7 * c) + i) * np.cos(y / (15 + 5 * c)) for c in range(3)], axis=-1)
        pixels = np.clip(127 + 100 * base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def measure() -> dict:
    from augbench.clip_embeddings import encode_image_files
    from augbench.images import ManifestImages
    from augbench.models import load_clip

    with tempfile.TemporaryDirectory() as tmp:
        paths = photos(Path(tmp), IMAGES)
        model, preprocess, _ = load_clip(MODEL, None, torch.device("cpu"))
        # The same tensors the embed module makes, decoded once beforehand.
        tensors = torch.stack([ManifestImages(paths, [0] * len(paths), preprocess)[i][0] for i in range(len(paths))])
        encode_image_files(paths[:BATCH], MODEL, batch_size=BATCH, num_workers=0)  # warm-up, caches
        with torch.inference_mode():
            model.encode_image(tensors[:BATCH])
            start = time.perf_counter()
            for begin in range(0, IMAGES, BATCH):
                model.encode_image(tensors[begin : begin + BATCH], normalize=True)
            forward = IMAGES / (time.perf_counter() - start)
        start = time.perf_counter()
        encode_image_files(paths, MODEL, batch_size=BATCH, num_workers=WORKERS)
        module = IMAGES / (time.perf_counter() - start - _load_seconds(MODEL))
    print(f"   module {module:.1f} images/s, forward {forward:.1f} images/s")
    return {"embed_images_per_s": module, "embed_forward_images_per_s": forward, "embed_ratio": module / forward}


def _load_seconds(model: str) -> float:
    """Building the model is a fixed cost per job, not per image: measured apart and left out."""
    from augbench.models import load_clip

    start = time.perf_counter()
    load_clip(model, None, torch.device("cpu"))
    return time.perf_counter() - start
