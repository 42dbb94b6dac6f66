"""Train a torchvision classifier from scratch on real plus added images.

    python -m augbench.train --manifest subset.csv [--manifest added.csv] \
        --classes classes.txt --out model.safetensors --arch resnet18 --seed 0 ...

The weights go to ``--out`` (safetensors); the recipe that produced them, which
``augbench.evaluate`` needs to rebuild the model, goes beside it as JSON.
"""

from __future__ import annotations

import argparse
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.transforms import v2 as T
from tqdm import tqdm

from augbench.files import atomic_path, read_classes, read_manifest, write_json
from augbench.images import ManifestImages, pick_device
from augbench.optim import warmup_cosine

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


def build_model(arch: str, num_classes: int) -> torch.nn.Module:
    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except ValueError as error:
        raise ValueError(f"classifier.arch {arch!r} is not a torchvision model: {error}") from None


def train_transform(recipe: Recipe):
    steps = [T.RandomResizedCrop(recipe.image_size, scale=(recipe.crop_scale_min, 1.0), antialias=True)]
    if recipe.hflip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(
        [*steps, T.PILToTensor(), T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


def eval_transform(recipe: Recipe):
    resize = round(recipe.image_size / recipe.eval_crop_ratio)
    return T.Compose(
        [
            T.Resize(resize, antialias=True),
            T.CenterCrop(recipe.image_size),
            T.PILToTensor(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def combined_training_set(manifests: list[str], num_classes: int) -> pd.DataFrame:
    frames = [read_manifest(path) for path in manifests]
    frame = pd.concat(frames, ignore_index=True)
    bad = frame[(frame.label < 0) | (frame.label >= num_classes)]
    if len(bad):
        raise ValueError(
            f"{len(bad)} training image(s) have a label outside [0, {num_classes}), e.g. {bad.path.iloc[0]}"
        )
    if frame.empty:
        raise ValueError(f"no training images in {manifests}")
    return frame


def train(
    manifests: list[str],
    classes_path: str,
    out: str,
    recipe: Recipe,
    seed: int,
    device: str = "auto",
    threads: int | None = None,
) -> dict:
    """Train from scratch and write the weights to ``out``; return a short training record."""
    if threads:
        torch.set_num_threads(threads)
    classes = read_classes(classes_path)
    frame = combined_training_set(manifests, len(classes))
    generator = seed_everything(seed)
    dev = pick_device(device)
    dataset = ManifestImages(frame.path.tolist(), frame.label.tolist(), train_transform(recipe))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=min(recipe.batch_size, len(dataset)),
        shuffle=True,
        drop_last=len(dataset) > recipe.batch_size,
        num_workers=recipe.num_workers,
        persistent_workers=recipe.num_workers > 0,
        pin_memory=dev.type == "cuda",
        generator=generator,
    )
    model = build_model(recipe.arch, len(classes)).to(dev, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=True
    )
    schedule = warmup_cosine(optimizer, recipe.epochs * len(loader), warmup_share=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    last_loss = float("nan")
    for epoch in tqdm(range(recipe.epochs), desc="train epochs", mininterval=5):
        total, count = 0.0, 0
        for images, labels in loader:
            images = images.to(dev, non_blocking=True, memory_format=torch.channels_last)
            labels = labels.to(dev, non_blocking=True)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(labels)
            count += len(labels)
        last_loss = total / count
        log.debug("epoch %d loss %.4f", epoch, last_loss)
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))
    record = {"recipe": asdict(recipe), "seed": seed, "n_train_images": len(frame), "final_loss": last_loss}
    write_json(recipe_path(out), record)
    return record


def recipe_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", action="append", required=True, help="training manifest; repeat to combine")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", required=True, help="weights file (.safetensors)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    for field, default in asdict(Recipe()).items():
        flag = "--" + field.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, type=_parse_bool, default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    recipe = Recipe(**{field: getattr(args, field) for field in asdict(Recipe())})
    record = train(args.manifest, args.classes, args.out, recipe, args.seed, args.device, args.threads)
    log.info("trained %s on %d images, final loss %.4f", recipe.arch, record["n_train_images"], record["final_loss"])


def _parse_bool(text: str) -> bool:
    if text.lower() in {"true", "1", "yes"}:
        return True
    if text.lower() in {"false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


if __name__ == "__main__":
    main()
