"""CLIP embeddings of image files and of texts, L2-normalised float32, so inner product is cosine similarity."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from augbench.embedding_files import save_embeddings
from augbench.images import ManifestImages, pick_device
from augbench.models import load_clip


@torch.inference_mode()
def encode_image_files(
    paths: list[str],
    model: str,
    pretrained: str | None = None,
    batch_size: int = 256,
    num_workers: int = 2,
    device: str = "auto",
    skip_unreadable: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """(L2-normalised CLIP image embeddings, reasons) of image files, in their order.

    An unreadable image stops with its name; with ``skip_unreadable`` its row is zero and its
    reason non-empty instead. A readable image's reason is empty.
    """
    dev = pick_device(device)
    clip, preprocess, _ = load_clip(model, pretrained, dev)
    loader = torch.utils.data.DataLoader(
        ManifestImages(paths, [0] * len(paths), preprocess, skip_unreadable=skip_unreadable),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
    )
    chunks, reasons = [], []
    for images, _, *why in tqdm(loader, desc="embed images", mininterval=5):
        features = clip.encode_image(images.to(dev, non_blocking=True), normalize=True).float().cpu().numpy()
        batch_reasons = list(why[0]) if why else [""] * len(features)
        features[[reason != "" for reason in batch_reasons]] = 0.0
        reasons += batch_reasons
        chunks.append(features)
    features = np.concatenate(chunks) if chunks else np.zeros((0, clip.text_projection.shape[-1]), np.float32)
    return features, reasons


@torch.inference_mode()
def embed_texts(texts: list[str], out: str | None, model: str, pretrained: str | None = None, device: str = "auto"):
    """L2-normalised CLIP text embeddings of ``texts``, in their order; written to ``out`` unless it is None."""
    dev = pick_device(device)
    clip, _, tokenizer = load_clip(model, pretrained, dev)
    chunks = [
        clip.encode_text(tokenizer(texts[i : i + 1024]).to(dev), normalize=True).float().cpu().numpy()
        for i in range(0, len(texts), 1024)
    ]
    features = np.concatenate(chunks)
    if out:
        save_embeddings(out, features)
    return features
