"""How prompts are written from class names: one module for retrieval queries and generation."""

from __future__ import annotations

import numpy as np
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

# The 80 prompt templates of CLIP's ImageNet zero-shot classifier, as open_clip ships them.
CLIP_TEMPLATES = tuple(OPENAI_IMAGENET_TEMPLATES)
STYLES = ("classname", "clip_templates", "empty")


def class_prompts(classes: list[str], template: str) -> list[str]:
    """One prompt per class: ``template`` with ``{}`` replaced by the class name."""
    if "{}" not in template:
        raise ValueError(f"prompt template {template!r} has no '{{}}' where the class name goes")
    return [template.format(name) for name in classes]


def write_prompt(class_name: str, style: str, template: str, seed: int) -> str:
    """The prompt of one image: the class prompt, a CLIP template drawn with the image's seed, or none."""
    if style == "classname":
        return template.format(class_name)
    if style == "empty":
        return ""
    if style == "clip_templates":
        return CLIP_TEMPLATES[np.random.default_rng(seed).integers(len(CLIP_TEMPLATES))](class_name)
    raise ValueError(f"prompt style {style!r} is not one of {list(STYLES)}")
