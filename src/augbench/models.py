"""Load the foundation models by the same calls on a laptop and on a cluster.

CLIP: ``open_clip.create_model_and_transforms(name, pretrained=tag_or_path)``, where
``name`` is an open_clip model name (``ViT-L-14``), ``hf-hub:org/repo`` or
``local-dir:<folder>`` (the mini-world's CLIP).
Diffusion: ``StableDiffusionPipeline.from_pretrained(hub_id_or_folder, revision=...)``.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm_solver": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_clip(name: str, pretrained: str | None, device: torch.device):
    """Return (model in eval mode, eval preprocess, tokenizer)."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained or None, device=device)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


def load_pipeline(model: str, revision: str | None, scheduler: str, dtype: str, device: torch.device):
    """A StableDiffusionPipeline with the named scheduler, without the safety checker
    (images are training data, scored and filtered downstream, never shown to users)."""
    import diffusers

    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler {scheduler!r} is not one of {sorted(SCHEDULERS)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    if device.type == "cpu" and dtype != "float32":
        log.warning("dtype %s on CPU is slow or unsupported; using float32", dtype)
        dtype = "float32"
    pipeline = diffusers.StableDiffusionPipeline.from_pretrained(
        model, revision=revision or None, torch_dtype=DTYPES[dtype], safety_checker=None, requires_safety_checker=False
    )
    scheduler_class = getattr(diffusers, SCHEDULERS[scheduler])
    options = {"algorithm_type": "dpmsolver++"} if scheduler == "dpm_solver" else {}
    pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config, **options)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)
