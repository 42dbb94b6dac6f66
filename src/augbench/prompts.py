"""How prompts are written from class names: one module for retrieval queries and generation."""

from __future__ import annotations

from functools import cache

import numpy as np

STYLES = ("classname", "clip_templates", "empty")


@cache
def clip_templates() -> tuple:
    """The 80 prompt templates of CLIP's ImageNet zero-shot classifier, as open_clip ships them.
    Imported when first asked for: importing open_clip imports timm and transformers' models too,
    seconds that a generation job of class-name prompts would spend for nothing."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(OPENAI_IMAGENET_TEMPLATES)


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
        templates = clip_templates()
        return templates[np.random.default_rng(seed).integers(len(templates))](class_name)
    raise ValueError(f"prompt style {style!r} is not one of {list(STYLES)}")
