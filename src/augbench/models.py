"""Load the foundation models by the same calls on a laptop and on a cluster.

CLIP: ``open_clip.create_model_and_transforms(name, pretrained=tag_or_path)``, where
``name`` is an open_clip model name (``ViT-L-14``), ``hf-hub:org/repo`` or
``local-dir:<folder>`` (the mini-world's CLIP).
Diffusion: the family's pipeline class ``.from_pretrained(hub_id_or_folder, revision=...)``
(``augbench.backends``: Stable Diffusion 1/2, SDXL, SD3, FLUX).
"""

from __future__ import annotations

import torch

from augbench.backends import DTYPES, SCHEDULERS, load_backend

__all__ = ["DTYPES", "SCHEDULERS", "load_clip", "load_pipeline"]


def load_clip(name: str, pretrained: str | None, device: torch.device):
    """Return (model in eval mode, eval preprocess, tokenizer)."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained or None, device=device)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


def load_pipeline(
    model: str, revision: str | None, scheduler: str, dtype: str, device: torch.device, backend: str = "auto"
):
    """A text-to-image pipeline of the model's family (``augbench.backends``) with the named scheduler."""
    return load_backend(model, revision, scheduler, dtype, device, backend).pipeline
