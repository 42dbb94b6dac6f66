"""Image loading shared by every stage that reads pictures from a manifest."""

from __future__ import annotations

import torch
from PIL import Image


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB, whatever its mode (grayscale, palette, CMYK)."""
    with Image.open(path) as image:
        return image.convert("RGB")


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
