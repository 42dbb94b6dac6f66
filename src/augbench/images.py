"""Image loading shared by every stage that reads pictures from a manifest, and the device a stage runs on."""

from __future__ import annotations

import io
import os
import platform
import re
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from augbench.files import read_manifest

# torch is imported where it is used: screening, the subset draw and retrieval read images
# or quotas from here and need not pay for it (about 400 MB and seconds a job).
if TYPE_CHECKING:
    import torch

# Web images can be huge; anything with a longer side is shrunk while decoding (a
# 20,000 px panorama would otherwise take gigabytes), and PIL's decompression-bomb
# limit is lifted for files that draft-mode shrinking cannot reduce.
MAX_SIDE = 4096
Image.MAX_IMAGE_PIXELS = None


class UnreadableImage(ValueError):
    """An image file that cannot be decoded (empty, truncated, not an image)."""


# A member of a tar (a webdataset shard): "shard.tar::key.jpg@offset+size", where offset and
# size are the member's data bytes (as augbench.pool lists them); without "@offset+size" the
# member is looked up by name, which reads the tar's headers up to it.
TAR_MEMBER = re.compile(r"^(?P<tar>.+?\.tar)::(?P<member>.+?)(?:@(?P<offset>\d+)\+(?P<size>\d+))?$")


def tar_member_path(tar: str, member: str, offset: int, size: int) -> str:
    """The manifest path of a tar member whose data are ``size`` bytes from ``offset``."""
    return f"{tar}::{member}@{offset}+{size}"


def open_image_bytes(path: str):
    """A file object with the image's bytes: the file, or a tar member's data read by seeking to it."""
    match = TAR_MEMBER.match(path)
    if not match:
        return open(path, "rb")
    if match["offset"] is None:
        try:
            with tarfile.open(match["tar"], "r:") as tar:
                member = tar.extractfile(match["member"])
                return io.BytesIO(member.read() if member else b"")
        except (KeyError, tarfile.TarError) as error:
            raise OSError(f"{match['tar']}: {error}") from None
    with open(match["tar"], "rb") as handle:
        handle.seek(int(match["offset"]))
        data = handle.read(int(match["size"]))
    if len(data) != int(match["size"]):
        raise OSError(f"{match['tar']} ends before byte {int(match['offset']) + int(match['size'])}")
    return io.BytesIO(data)


def load_rgb(path: str) -> Image.Image:
    """Open an image (a file, or a tar member, see ``TAR_MEMBER``) as 8-bit RGB, whatever its mode:
    grayscale, 16-bit, CMYK, palette or transparency (composited on white, as the image is meant to be seen)."""
    try:
        with open_image_bytes(path) as data, Image.open(data) as image:
            if max(image.size) > MAX_SIDE:
                image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG decodes at a fraction of the size
            image.load()
            return _to_rgb(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableImage(f"image {path} cannot be read: {error}") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit) integer grey: scale the used range down to 8 bits.
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / max(top, 255.0))).round().astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def load_captioned_images(manifest: str, image_size: int) -> tuple[torch.Tensor, list[str]]:
    """Every image of a captioned manifest as one float tensor in [0, 1] (N, 3, H, W), and the captions.

    For pre-training on the mini-world's pools, which fit in memory many times over.
    """
    frame = read_manifest(manifest, labelled=False)
    if "caption" not in frame:
        raise ValueError(f"manifest {manifest} has no 'caption' column")
    import torch

    pixels = np.stack([np.asarray(load_rgb(path).resize((image_size, image_size))) for path in frame.path])
    tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0
    return tensor, frame.caption.astype(str).tolist()


class ManifestImages:
    """Images of a manifest, transformed, with their labels (a map-style dataset for torch's DataLoader).

    An unreadable image raises ``UnreadableImage``; with ``skip_unreadable`` it comes as a
    blank stand-in instead, and each item carries a third element, the reason ("" if read),
    so a pass over a large pool counts the broken files rather than stopping at the first.

    ``keep_decoded_mb`` keeps decoded images in memory, up to that many megabytes, for the
    epochs after the first: on a small training set of small images, decoding every image
    in every epoch costs a sixth of a CPU training's time.
    """

    def __init__(
        self,
        paths: list[str],
        labels: list[int],
        transform,
        skip_unreadable: bool = False,
        keep_decoded_mb: float = 0,
    ):
        if len(paths) != len(labels):
            raise ValueError("paths and labels differ in length")
        self.paths = list(paths)
        self.labels = [int(label) for label in labels]
        self.transform = transform
        self.skip_unreadable = skip_unreadable
        self.keep_decoded_bytes = keep_decoded_mb * 1e6
        self.decoded: dict[int, Image.Image] = {}
        self.decoded_bytes = 0

    def _load(self, index: int) -> Image.Image:
        image = self.decoded.get(index)
        if image is None:
            image = load_rgb(self.paths[index])
            size = image.width * image.height * 3
            if self.decoded_bytes + size <= self.keep_decoded_bytes:
                self.decoded[index] = image
                self.decoded_bytes += size
        return image

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        if not self.skip_unreadable:
            return self.transform(self._load(index)), self.labels[index]
        try:
            return self.transform(self._load(index)), self.labels[index], ""
        except UnreadableImage as error:
            return self.transform(Image.new("RGB", (8, 8), (255, 255, 255))), self.labels[index], str(error)


def pick_device(requested: str = "auto") -> torch.device:
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


# The settings that pin oneDNN's and MKL's code paths (torch's own: cpu_kernels); make demo sets them.
KERNEL_PINS = ("ONEDNN_MAX_CPU_ISA", "MKL_CBWR")


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    """What a model was trained on, for its record: the same code and seeds give other weights on
    another CPU or GPU (their kernels sum in other orders), so a figure that moved can be traced."""
    import torch

    return {
        "cpu": cpu_model(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "kernel_pins": {name: os.environ[name] for name in KERNEL_PINS if name in os.environ},
    }
