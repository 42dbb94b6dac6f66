"""Image loading shared by every stage that reads pictures from a manifest."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from augbench.files import read_manifest


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB, whatever its mode (grayscale, palette, CMYK)."""
    with Image.open(path) as image:
        return image.convert("RGB")


def load_captioned_images(manifest: str, image_size: int) -> tuple[torch.Tensor, list[str]]:
    """Every image of a captioned manifest as one float tensor in [0, 1] (N, 3, H, W), and the captions.

    For pre-training on the mini-world's pools, which fit in memory many times over.
    """
    frame = read_manifest(manifest)
    if "caption" not in frame:
        raise ValueError(f"manifest {manifest} has no 'caption' column")
    pixels = np.stack([np.asarray(load_rgb(path).resize((image_size, image_size))) for path in frame.path])
    tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
    return tensor, frame.caption.astype(str).tolist()


class ManifestImages(torch.utils.data.Dataset):
    """Images of a manifest, transformed, with their labels."""

    def __init__(self, paths: list[str], labels: list[int], transform):
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.transform(load_rgb(self.paths[index])), self.labels[index]


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)
