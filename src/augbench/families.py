"""The diffusion model families augbench runs, and which one a pipeline is, without importing torch
(the config check uses this; ``augbench.backends`` holds each family's adapter).

A family is named by the ``_class_name`` in its pipeline folder's ``model_index.json``, unless
``diffusion.backend`` names it: ``sd`` (Stable Diffusion 1 and 2), ``sdxl``, ``sd3`` (SD3 and
3.5) and ``flux`` (FLUX.1).
"""

from __future__ import annotations

import json
from pathlib import Path

# Each family's pipelines as model_index.json names them: text-to-image first, then image-to-image.
PIPELINES = {
    "sd": ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
    "sdxl": ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
    "sd3": ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline"),
    "flux": ("FluxPipeline", "FluxImg2ImgPipeline"),
}
BACKEND_NAMES = ("auto", *PIPELINES)
# Families trained by flow matching (a transformer); the others are noise-prediction UNets.
FLOW_FAMILIES = ("sd3", "flux")
# Families whose pipeline's guidance_scale is an input of a guidance-distilled model (FLUX.1-dev;
# schnell ignores it), not classifier-free guidance; their pipelines guide against a negative
# prompt only at a true_cfg_scale above 1 (two passes of the model per step).
GUIDANCE_AS_MODEL_INPUT = ("flux",)
# Schedulers of noise-prediction models (a UNet's DDPM-style schedule) ...
UNET_SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "dpm_solver": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
}
# ... and of flow-matching models, whose pipelines hand the scheduler sigmas and a shift.
FLOW_SCHEDULERS = {"flow_euler": "FlowMatchEulerDiscreteScheduler"}
SCHEDULERS = UNET_SCHEDULERS | FLOW_SCHEDULERS


def schedulers_of(family: str) -> dict[str, str]:
    """The schedulers that can sample a family: name -> diffusers class."""
    return FLOW_SCHEDULERS if family in FLOW_FAMILIES else UNET_SCHEDULERS


def model_index(model: str, revision: str | None = None) -> dict | None:
    """A pipeline's model_index.json, from its folder or (a hub id's) from the local hub cache; else None."""
    folder = Path(model)
    if (folder / "model_index.json").is_file():
        return json.loads((folder / "model_index.json").read_text())
    if folder.is_dir():
        raise ValueError(f"diffusion model {model} is a folder without model_index.json, not a diffusers pipeline")
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "model_index.json", revision=revision or None)
    except ValueError:  # neither a folder nor a hub id
        return None
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None


def backend_name(model: str, revision: str | None = None, backend: str = "auto", required: bool = True) -> str | None:
    """The family of a pipeline: ``backend`` where it names one, else read from its model_index.json.

    Where the index cannot be read (a hub id not downloaded yet, a folder not trained yet) this
    fails when ``required``, else returns None (the config check leaves the rest to the job).
    """
    if backend != "auto":
        if backend not in PIPELINES:
            raise ValueError(f"diffusion backend {backend!r} is not one of {list(BACKEND_NAMES)}")
        return backend
    index = model_index(model, revision)
    if index is None:
        if required:
            raise ValueError(
                f"cannot read the model_index.json of diffusion model {model}; set diffusion.backend to one of "
                f"{list(PIPELINES)}"
            )
        return None
    class_name = index.get("_class_name")
    for name, classes in PIPELINES.items():
        if class_name in classes:
            return name
    raise ValueError(
        f"diffusion model {model} is a {class_name}, which augbench has no backend for "
        f"(it runs {', '.join(classes[0] for classes in PIPELINES.values())}); "
        "set diffusion.backend if it is one of these families under another name"
    )
