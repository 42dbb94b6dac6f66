"""The method registry's combination rules: which settings of a method can work together.

Written once and called twice: when the study reads a config (``augbench.study``, which
names the config key at fault) and by the stage that runs the method (``augbench.generate``,
``augbench.personalise``), so a job started by hand fails the same way a config does.
Each check raises :class:`SettingError` with the setting's key relative to the method's
registry entry (``prompt``, ``personalise.clusters``).
"""

from __future__ import annotations

from augbench.families import FLOW_FAMILIES, GUIDANCE_AS_MODEL_INPUT, schedulers_of

# What a personalisation learns: a token per class, a conditioning per class (or cluster of a
# class), one UNet for all classes, or tokens and a UNet together.
TARGETS = ("token", "conditioning", "unet", "token_unet")
# Targets learned per class run in shards of classes; UNet targets are one model.
PER_CLASS_TARGETS = ("token", "conditioning")
# Targets that add a token per class to the text encoder.
TOKEN_TARGETS = ("token", "token_unet")


class SettingError(ValueError):
    """A setting of a method that cannot work as given; ``key`` is relative to the method's entry."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def check_personalisation(target: str, clusters: int = 1, shards: int = 1) -> None:
    """A personalisation's target, clusters and shards."""
    if target not in TARGETS:
        raise SettingError("personalise.target", f"{target!r} is not one of {list(TARGETS)}")
    if clusters > 1 and target != "conditioning":
        raise SettingError("personalise.clusters", f"clusters apply to target 'conditioning', not {target!r}")
    if shards > 1 and target not in PER_CLASS_TARGETS:
        raise SettingError(
            "personalise.shards",
            f"target {target!r} learns one UNet for all classes and runs as one job; "
            f"shards apply to {list(PER_CLASS_TARGETS)}",
        )


def check_generation(
    prompt: str,
    strength: float | None = None,
    zero_shot_keep: float | None = None,
    target: str | None = None,
    filters_by_clip_score: bool = False,
) -> None:
    """The prompt, image-to-image, zero-shot labelling, personalisation and CLIP-score filter
    of one generation method (``target`` None: not personalised)."""
    if prompt == "empty" and zero_shot_keep is None:
        raise SettingError(
            "zero_shot_keep",
            "an empty prompt gives images no class; set a share in (0, 1] to label them by CLIP zero-shot "
            "classification",
        )
    if prompt == "empty" and (strength is not None or target is not None):
        raise SettingError(
            "prompt", "'empty' cannot go with strength or personalise, which start from a class; use 'classname'"
        )
    if target == "conditioning" and prompt != "classname":
        raise SettingError("prompt", "a learned conditioning replaces the prompt; only 'classname' is allowed")
    check_clip_filter(zero_shot_keep, filters_by_clip_score)


def check_backend(
    backend: str | None,
    scheduler: str | None = None,
    guidance_scale: float | None = None,
    true_cfg_scale: float | None = None,
) -> None:
    """What a model family (``augbench.families``; None: not known yet) can sample: its schedulers,
    and guidance that means what the registry means by it."""
    if true_cfg_scale is not None and true_cfg_scale < 1:
        raise SettingError(
            "true_cfg_scale", f"must be at least 1 (1: no classifier-free guidance), not {true_cfg_scale}"
        )
    if backend is None:
        return
    if scheduler is not None and scheduler not in schedulers_of(backend):
        kind = "flow matching" if backend in FLOW_FAMILIES else "noise prediction"
        raise SettingError(
            "scheduler",
            f"{scheduler!r} cannot sample backend {backend!r}, which is trained by {kind}; "
            f"use one of {list(schedulers_of(backend))}",
        )
    if backend not in GUIDANCE_AS_MODEL_INPUT and true_cfg_scale is not None:
        raise SettingError(
            "true_cfg_scale",
            f"on backend {backend!r} guidance_scale is classifier-free guidance already; true_cfg_scale is for "
            f"{list(GUIDANCE_AS_MODEL_INPUT)}, whose guidance_scale is a model input: set guidance_scale instead",
        )
    if backend in GUIDANCE_AS_MODEL_INPUT and guidance_scale is not None and guidance_scale <= 1:
        raise SettingError(
            "guidance_scale",
            f"on backend {backend!r} guidance_scale is an input of the guidance-distilled model (FLUX.1-dev; "
            f"schnell ignores it), not classifier-free guidance, so {guidance_scale} does not turn guidance off; "
            "give the guidance the model was distilled for (3.5 for FLUX.1-dev), and true_cfg_scale for "
            "classifier-free guidance against the empty prompt (null or 1: none, as FLUX samples by default)",
        )


def check_clip_filter(zero_shot_keep: float | None, filters_by_clip_score: bool) -> None:
    """The CLIP-score filter and zero-shot labelling both keep what CLIP scores best: one of them."""
    if filters_by_clip_score and zero_shot_keep is not None:
        raise SettingError(
            "min_clip_score",
            "cannot go with zero_shot_keep, which already keeps the share of images CLIP scores best; set one of them",
        )
