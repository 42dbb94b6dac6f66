"""Which CLIP embeds, where it runs and how it reads images: the settings every embedding stage
shares (``clip.*`` and ``device`` of the config), and images embedded with them.

Light to import: stages that only read these settings do not load torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from augbench.cli import setting


@dataclass
class Clip:
    """The CLIP that embeds (``clip.model``, ``clip.pretrained``) and where it runs."""

    # No default: every stage's embeddings must come from the one CLIP the workflow names.
    model: str = setting(help="open_clip model name, hf-hub:..., or local-dir:...")
    pretrained: str | None = setting(None, help="open_clip pretrained tag or weights file", config="clip.pretrained")
    device: str = setting("auto", help="torch device", config="device")


@dataclass
class ImageEmbedding(Clip):
    """The CLIP, and how it reads images (``clip.batch_size``, ``clip.num_workers``)."""

    batch_size: int = setting(256, help="images per embedding batch", config="clip.batch_size")
    num_workers: int = setting(2, help="DataLoader workers decoding images", config="clip.num_workers")


def encode_images(paths: list[str], clip: ImageEmbedding) -> tuple[np.ndarray, list[str]]:
    """The images' embeddings, a zero row for an unreadable one, and per image why it could not be read ("": read)."""
    # Imported here: the settings above are read by stages that may embed nothing (torch unneeded).
    from augbench.clip_embeddings import encode_image_files

    return encode_image_files(
        paths, clip.model, clip.pretrained, clip.batch_size, clip.num_workers, clip.device, skip_unreadable=True
    )
