"""The classifier the study trains and evaluates: its recipe, its torchvision model, the
starting weights it may load, and the transforms of training and evaluation images.

``augbench.train`` writes the recipe beside the weights (``recipe_path``), so that
``augbench.evaluate`` rebuilds the same model and evaluation transform from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from safetensors.torch import load_file
from torchvision.transforms import v2 as T

from augbench.small_cnn import SMALL_CNNS, small_cnn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

log = logging.getLogger(__name__)


@dataclass
class Recipe:
    """Every hyperparameter of classifier training (torchvision reference recipe style)."""

    arch: str = "resnet50"
    image_size: int = 224
    epochs: int = 90
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    crop_scale_min: float = 0.08
    hflip: bool = True
    eval_crop_ratio: float = 0.875
    num_workers: int = 4
    init_weights: str | None = None  # None: from scratch


def build_model(arch: str, num_classes: int) -> torch.nn.Module:
    """A newly initialised classifier: one of augbench's small CNNs, or any torchvision model."""
    if arch in SMALL_CNNS:
        return small_cnn(arch, num_classes)
    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except ValueError as error:
        raise ValueError(
            f"classifier.arch {arch!r} is neither a torchvision model nor one of {sorted(SMALL_CNNS)}: {error}"
        ) from None


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch checkpoint (bare, or under "state_dict"/"model")."""
    if path.endswith(".safetensors"):
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"classifier.init_weights {path}: not a state dict")
    return {key.removeprefix("module."): value for key, value in state.items()}  # DDP checkpoints


def initialise(model: torch.nn.Module, path: str) -> None:
    """Load a weights file into ``model``; only the classification layer may differ in shape
    (other classes than the weights were trained on), and it then stays newly initialised."""
    state = read_state_dict(path)
    own = model.state_dict()
    head = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)][-1]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"classifier.init_weights {path} does not fit {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]} (of {len(missing)} and {len(unexpected)})"
        )
    differ = sorted(key for key in own if own[key].shape != state[key].shape)
    if any(key.rsplit(".", 1)[0] != head for key in differ):
        raise ValueError(f"classifier.init_weights {path}: shapes differ for {differ[:5]}")
    for key in differ:
        log.info("%s: %s in the weights file, %s here; left newly initialised", key, state[key].shape, own[key].shape)
        del state[key]
    model.load_state_dict(state, strict=False)


def train_transform(recipe: Recipe):
    """One training image's random crop (and flip) as a uint8 tensor; :func:`model_input` does the rest."""
    steps = [T.RandomResizedCrop(recipe.image_size, scale=(recipe.crop_scale_min, 1.0), antialias=True)]
    if recipe.hflip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose([*steps, T.PILToTensor()])


def eval_transform(recipe: Recipe):
    """One evaluation image resized and centre-cropped, as a uint8 tensor; :func:`model_input` does the rest."""
    resize = round(recipe.image_size / recipe.eval_crop_ratio)
    return T.Compose([T.Resize(resize, antialias=True), T.CenterCrop(recipe.image_size), T.PILToTensor()])


# Scaling and normalising a whole batch, once, rather than each image in the loader: done per
# image, these steps made a demo training (small_cnn, one thread) 4.7 s against 4.15 s, and a
# batch of uint8 copies to a GPU in a quarter of the bytes. The values are the same to the bit
# (elementwise steps).
_NORMALISE = T.Compose([T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch from :func:`train_transform` or :func:`eval_transform` as the classifier takes it:
    on ``device``, scaled to [0, 1], normalised with ImageNet's mean and std, channels-last."""
    images = _NORMALISE(images.to(device, non_blocking=True))
    return images.contiguous(memory_format=torch.channels_last)


def recipe_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")
