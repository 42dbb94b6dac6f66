"""Personalise the diffusion model to the target subset; generation then samples from it.

    python -m augbench.personalise --model CompVis/stable-diffusion-v1-4 --classes classes.txt \
        --subset subset.csv --target token --vectors 1 --shard 0 --shards 20 --out shard0.safetensors

Targets (what is learned, by the model's own training loss on the real images: denoising for
Stable Diffusion 1/2 and SDXL, flow matching for SD3 and FLUX; ``augbench.backends``):

- ``token`` (textual inversion): a new token per class, ``--vectors`` input embeddings
  of the text encoder, started from the class name's; prompt "a photo of a <class-3>".
- ``conditioning``: the text encoder's output sequence itself (what the UNet attends
  to), one per class, or with ``--clusters k`` one per k-means cluster of the class's
  CLIP image embeddings (``--embeddings``); started from the class prompt's.
- ``unet``: the UNet, fine-tuned with class prompts, fully or as LoRA (``--unet lora``,
  peft adapters on the attention projections, as diffusers' LoRA training does).
- ``token_unet``: tokens and UNet together (DreamBooth-like).

Per-class targets learn each class independently: a step takes ``--batch-size`` images of
every class of the shard and sums the per-class losses, so each class's parameters see
only their own images and a class's result does not depend on how classes are sharded.
UNet targets learn one model from the whole subset and have one shard.

At Stable Diffusion's 512 px a step's batch may not fit in GPU memory at once:
``--micro-batch`` runs it in parts of that many images whose gradients add up to the
whole batch's (noise and timesteps are drawn for the whole batch first), so the update
is the same up to float error. ``--precision bfloat16`` runs the passes under autocast
(weights and optimiser stay float32) and ``--gradient-checkpointing`` recomputes the
UNet's activations in the backward pass instead of storing them.

Each target is a class of ``augbench.personalisation`` (its parameters, the UNet's
conditioning, its export); the loop here drives any of them. The artefact is one safetensors
file per shard, read by generation through ``augbench.personalisation``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms
from tqdm import tqdm

from augbench.backends import BACKEND_NAMES, Backend, load_backend
from augbench.cli import add_settings, settings_from, start_logging, use_threads
from augbench.files import read_classes, read_manifest
from augbench.images import load_rgb, pick_device
from augbench.methods import check_personalisation
from augbench.optim import warmup_cosine
from augbench.personalisation import (
    PRECISIONS,
    UNET_MODES,
    Personalisation,
    Target,
    Training,
    TrainingImages,
    make_target,
    save_personalisation,
)
from augbench.shards import shard_block

log = logging.getLogger(__name__)


def subset_pixels(paths: list[str], size: int) -> torch.Tensor:
    """Real images resized and centre-cropped to the pipeline's resolution, in [-1, 1]."""
    transform = transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    return torch.stack([transform(load_rgb(path)) for path in paths])


def subset_latents(
    backend: Backend, paths: list[str], size: int, chunk_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds of the real images' latents as the denoiser takes them, read a
    chunk at a time (a large subset at 512 px would not fit in memory as pixels)."""
    parts = [backend.latents(subset_pixels(paths[i : i + chunk_size], size)) for i in range(0, len(paths), chunk_size)]
    return torch.cat([means for means, _ in parts]), torch.cat([stds for _, stds in parts])


def micro_batches(size: int, micro_batch: int | None) -> list[slice]:
    """The parts of a step's batch of ``size`` images that pass through the model one at a time."""
    if micro_batch is not None and micro_batch < 1:
        raise ValueError(
            f"micro_batch must be a positive number of images (or None for the whole batch), not {micro_batch}"
        )
    step = size if micro_batch is None else micro_batch
    return [slice(start, min(start + step, size)) for start in range(0, size, step)]


def read_images(
    classes_path: str, subset_manifest: str, shard: int, shards: int, embeddings: str | None
) -> TrainingImages:
    """The subset's images of this shard's classes (and their CLIP image embeddings, where given)."""
    classes = read_classes(classes_path)
    subset = read_manifest(subset_manifest)
    labels = [int(label) for label in shard_block(len(classes), shard, shards)]
    in_shard = subset.label.isin(labels).to_numpy()
    rows = subset[in_shard].reset_index(drop=True)
    empty = [label for label in labels if not (rows.label == label).any()]
    if empty:
        raise ValueError(f"classes {[classes[label] for label in empty]} have no images in {subset_manifest}")
    features = np.load(embeddings)[in_shard] if embeddings else None
    return TrainingImages(classes, labels, rows, features)


def personalise(
    model: str,
    classes_path: str,
    subset_manifest: str,
    out: str,
    training: Training,
    *,
    shard: int = 0,
    shards: int = 1,
    embeddings: str | None = None,
    revision: str | None = None,
    device: str = "auto",
    backend: str = "auto",
    text_length: int | None = None,
    image_size: int | None = None,
) -> Personalisation:
    """Learn ``training.target`` from the subset's images of this shard's classes; write the artefact to ``out``."""
    check_personalisation(training.target, training.clusters, shards)
    if training.unet not in UNET_MODES:
        raise ValueError(f"UNet fine-tuning {training.unet!r} is not one of {list(UNET_MODES)}")
    if training.precision not in PRECISIONS:
        raise ValueError(f"precision {training.precision!r} is not one of {list(PRECISIONS)}")
    micro_batches(training.batch_size, training.micro_batch)  # a bad value fails before the model loads
    if training.clusters > 1 and embeddings is None:
        raise ValueError("clusters > 1 needs the subset's CLIP image --embeddings")
    started = time.time()
    torch.manual_seed(training.seed)
    rng = np.random.default_rng([training.seed, shard])
    dev = pick_device(device)
    images = read_images(classes_path, subset_manifest, shard, shards, embeddings if training.clusters > 1 else None)

    # Training runs in float32 whatever the generation dtype.
    adapter = load_backend(model, revision, None, "float32", dev, backend, text_length)
    for module in adapter.modules():
        module.requires_grad_(False)
    if training.gradient_checkpointing:
        adapter.denoiser.enable_gradient_checkpointing()
    size = image_size or adapter.native_size()
    posteriors = subset_latents(adapter, images.rows.path.tolist(), size)
    target = make_target(training.target)
    loss = learn(target, adapter, images, posteriors, training, rng)
    log.info("personalised %s for %d classes; last loss %.4f", target.name, len(images.labels), loss)

    result = Personalisation(target=target.name)
    target.export(result)
    save_personalisation(out, result, images.labels, training.template, model)
    # On SD3 and FLUX a learned conditioning is far larger than on SD 1/2 (see diffusion.text_length).
    megabytes = Path(out).stat().st_size / 2**20
    log.info("saved %s (%.1f MB) in %.0f s", out, megabytes, time.time() - started)
    return result


def learn(
    target: Target,
    backend: Backend,
    images: TrainingImages,
    posteriors: tuple[torch.Tensor, torch.Tensor],
    training: Training,
    rng: np.random.Generator,
) -> float:
    """Train the target by the model family's training loss (denoising, or flow matching) on the
    real images (``posteriors``: their latents' means and stds); return the last step's loss.

    Per-class targets take ``batch_size`` images of every class a step and sum the per-class
    mean losses, so each class's parameters see only their own images; others draw
    ``batch_size`` images of all.
    """
    noise_scheduler = backend.training_scheduler()
    batch_size, means, stds, dev = training.batch_size, *posteriors, backend.pipeline.device
    optimizer = torch.optim.AdamW(target.setup(backend, images, training))
    schedule = warmup_cosine(optimizer, training.steps)
    members = images.members()
    loss = 0.0
    for _ in tqdm(range(training.steps), desc=f"personalise {target.name}", mininterval=5):
        if target.per_class:
            picks = np.concatenate([rng.choice(rows, size=batch_size) for rows in members])
        else:
            picks = rng.integers(len(images.rows), size=batch_size)
        index = torch.from_numpy(picks)
        latents = (means[index] + stds[index] * torch.randn_like(means[index])).to(dev)
        noise, timesteps = backend.draw_noise(noise_scheduler, latents)
        parts = micro_batches(len(picks), training.micro_batch)
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for part in parts:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=training.precision == "bfloat16"):
                conditioning = target.conditioning(picks[part])
                losses = backend.loss(noise_scheduler, latents[part], conditioning, noise[part], timesteps[part])
            if len(parts) > 1:
                # Either loss below is the sum of per-image losses over batch_size; so is the sum of these.
                part_loss = losses.sum() / batch_size
            elif target.per_class:
                part_loss = losses.view(len(members), batch_size).mean(dim=1).sum()
            else:
                part_loss = losses.mean()
            part_loss.backward()
            loss += part_loss.item()
        target.clip_gradients()
        optimizer.step()
        schedule.step()
    return loss


def main(argv: list[str] | None = None) -> None:
    # Defaults live in Training and personalise(); an option left out stays out of the namespace.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS
    )
    parser.add_argument("--model", required=True, help="hub id or local pipeline folder")
    parser.add_argument("--revision")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--subset", required=True, help="the real images to personalise to")
    parser.add_argument("--out", required=True, help="safetensors file to write")
    parser.add_argument("--shard", type=int, help="which block of the classes this job learns")
    parser.add_argument("--shards", type=int, help="blocks the classes are split into")
    parser.add_argument("--embeddings", help="CLIP image embeddings of the subset (.npy, rows as --subset)")
    parser.add_argument("--device")
    parser.add_argument("--backend", choices=BACKEND_NAMES, help="model family (default: from its model_index.json)")
    parser.add_argument("--text-length", type=int, help="T5 tokens per prompt (SD3, FLUX; default: the pipeline's)")
    parser.add_argument("--image-size", type=int, help="side of the training images (default: the pipeline's native)")
    parser.add_argument("--threads", type=int)
    add_settings(parser, Training)
    args = parser.parse_args(argv)
    start_logging()
    use_threads(getattr(args, "threads", None))
    job = {
        key: getattr(args, key)
        for key in ("shard", "shards", "embeddings", "revision", "device", "backend", "text_length", "image_size")
        if key in args
    }
    personalise(args.model, args.classes, args.subset, args.out, settings_from(args, Training), **job)


if __name__ == "__main__":
    main()
