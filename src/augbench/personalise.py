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

The loop runs under ``accelerate``, as diffusers' own training scripts do. Started by
``torchrun --nproc_per_node N`` (the workflow does so where a method's ``processes`` is
more than 1) a job uses N GPUs of its node: every process draws the same step (images,
noise, timesteps), takes its share of the batch, and the processes' gradients are summed
before the step, so the global batch stays ``--batch-size`` and a step equals one
process's up to float sums. Only the first process writes the artefact.

At Stable Diffusion's 512 px a step's batch may not fit in GPU memory at once:
``--micro-batch`` runs a process's share in parts of that many images whose gradients add
up to the whole batch's (noise and timesteps are drawn for the whole batch first), so the
update is the same up to float error: gradient accumulation within the step.
``--precision`` is accelerate's mixed precision: ``bfloat16`` (or ``float16``, on GPUs, with
loss scaling) runs the passes under autocast while weights and optimiser stay float32, and
``--gradient-checkpointing`` recomputes the UNet's activations in the backward pass instead
of storing them.

Each target is a class of ``augbench.personalisation`` (its parameters, the UNet's
conditioning, its export); the loop here drives any of them. The artefact is one safetensors
file per shard, read by generation through ``augbench.personalisation``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torchvision import transforms
from tqdm import tqdm

from augbench.backends import BACKEND_NAMES, Backend, load_backend
from augbench.cli import add_settings, run, settings_from, start_logging, use_threads
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

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)
# accelerate's names of the precisions.
MIXED_PRECISION = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}


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


def process_share(size: int, rank: int, processes: int) -> slice:
    """The images of a step's batch of ``size`` that process ``rank`` of ``processes`` passes
    through the model: consecutive blocks, their sizes at most one apart."""
    if size < processes:
        raise ValueError(
            f"a step's {size} images cannot be split over {processes} processes: "
            "raise batch_size or give the job fewer GPUs (processes)"
        )
    bounds = np.linspace(0, size, processes + 1).round().astype(int)
    return slice(int(bounds[rank]), int(bounds[rank + 1]))


def start_accelerator(precision: str, device: str) -> tuple[Accelerator, torch.device]:
    """This job's ``accelerate.Accelerator`` (one process, or those torchrun started) and its device."""
    from accelerate import Accelerator

    dev = pick_device(device)
    if precision == "float16" and dev.type == "cpu":
        raise ValueError("precision float16 needs a GPU (its loss scaling is CUDA's); on a CPU use bfloat16 or float32")
    # accelerate keeps one state per Python process, and a job is one process (torchrun's: one
    # per GPU, each forming the process group here).
    accelerator = Accelerator(mixed_precision=MIXED_PRECISION[precision], cpu=dev.type == "cpu")
    # One process keeps the device asked for; several take one GPU each (torchrun's LOCAL_RANK).
    return accelerator, dev if accelerator.num_processes == 1 else accelerator.device


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
    accelerator, dev = start_accelerator(training.precision, device)
    torch.manual_seed(training.seed)
    rng = np.random.default_rng([training.seed, shard])
    images = read_images(classes_path, subset_manifest, shard, shards, embeddings if training.clusters > 1 else None)
    target = make_target(training.target)
    step_images = len(images.labels) * training.batch_size if target.per_class else training.batch_size
    process_share(step_images, accelerator.process_index, accelerator.num_processes)  # fails before the model loads

    # Training runs in float32 whatever the generation dtype. The first process loads first, so
    # that a model from the hub is downloaded once.
    with accelerator.main_process_first():
        adapter = load_backend(model, revision, None, "float32", dev, backend, text_length)
    for module in adapter.modules():
        module.requires_grad_(False)
    if training.gradient_checkpointing:
        adapter.denoiser.enable_gradient_checkpointing()
    size = image_size or adapter.native_size()
    posteriors = subset_latents(adapter, images.rows.path.tolist(), size)
    loss = learn(target, adapter, images, posteriors, training, rng, accelerator)

    result = Personalisation(target=target.name)
    target.export(result)
    if accelerator.is_main_process:
        log.info("personalised %s for %d classes; last loss %.4f", target.name, len(images.labels), loss)
        save_personalisation(out, result, images.labels, training.template, model)
        # On SD3 and FLUX a learned conditioning is far larger than on SD 1/2 (see diffusion.text_length).
        megabytes = Path(out).stat().st_size / 2**20
        processes = accelerator.num_processes
        log.info("saved %s (%.1f MB) in %.0f s on %d process(es)", out, megabytes, time.time() - started, processes)
    accelerator.wait_for_everyone()
    return result


def learn(
    target: Target,
    backend: Backend,
    images: TrainingImages,
    posteriors: tuple[torch.Tensor, torch.Tensor],
    training: Training,
    rng: np.random.Generator,
    accelerator: Accelerator,
) -> float:
    """Train the target by the model family's training loss (denoising, or flow matching) on the
    real images (``posteriors``: their latents' means and stds); return the last step's loss.

    Per-class targets take ``batch_size`` images of every class a step and sum the per-class
    mean losses, so each class's parameters see only their own images; others draw
    ``batch_size`` images of all. Either loss is the sum of per-image losses over
    ``batch_size``, so a process's share of it is its images' sum over ``batch_size``, and the
    processes' gradients add up to the whole batch's.
    """
    noise_scheduler = backend.training_scheduler()
    batch_size, means, stds, dev = training.batch_size, *posteriors, backend.pipeline.device
    groups = target.setup(backend, images, training)
    parameters = [parameter for group in groups for parameter in group["params"]]
    rank, processes = accelerator.process_index, accelerator.num_processes
    members = images.members()
    if processes > 1:
        # Every process starts from the first one's parameters, as DDP does.
        for parameter in parameters:
            torch.distributed.broadcast(parameter.data, src=0)
    optimizer = torch.optim.AdamW(groups)
    schedule = warmup_cosine(optimizer, training.steps)
    # Prepared, the optimiser steps through accelerate's loss scaler under float16.
    optimizer = accelerator.prepare_optimizer(optimizer, device_placement=False)
    loss = 0.0
    steps = tqdm(
        range(training.steps), desc=f"personalise {target.name}", mininterval=5, disable=not accelerator.is_main_process
    )
    for _ in steps:
        # Every process draws the whole step, as one process would, and passes its share of it.
        if target.per_class:
            picks = np.concatenate([rng.choice(rows, size=batch_size) for rows in members])
        else:
            picks = rng.integers(len(images.rows), size=batch_size)
        index = torch.from_numpy(picks)
        latents = (means[index] + stds[index] * torch.randn_like(means[index])).to(dev)
        noise, timesteps = backend.draw_noise(noise_scheduler, latents)
        share = process_share(len(picks), rank, processes)
        parts = [
            slice(share.start + part.start, share.start + part.stop)
            for part in micro_batches(share.stop - share.start, training.micro_batch)
        ]
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for part in parts:
            with accelerator.autocast():
                conditioning = target.conditioning(picks[part])
                losses = backend.loss(noise_scheduler, latents[part], conditioning, noise[part], timesteps[part])
            if len(parts) > 1 or processes > 1:
                # Either loss below is the sum of per-image losses over batch_size; so is the sum of these.
                part_loss = losses.sum() / batch_size
            elif target.per_class:
                part_loss = losses.view(len(members), batch_size).mean(dim=1).sum()
            else:
                part_loss = losses.mean()
            accelerator.backward(part_loss)
            loss += part_loss.item()
        if processes > 1:
            sum_gradients(parameters)
        accelerator.unscale_gradients()  # loss scaling (float16) undone before clipping
        target.clip_gradients()
        optimizer.step()
        schedule.step()
    if processes > 1:
        loss = accelerator.reduce(torch.tensor(loss, device=dev), reduction="sum").item()
    return loss


# The size of the gradient buckets one all_reduce sums (DDP's default): one collective per
# bucket rather than per parameter (a LoRA has hundreds), small enough not to double the memory
# of a fully fine-tuned UNet's gradients.
GRADIENT_BUCKET_BYTES = 25 * 2**20


def gradient_buckets(gradients: list[torch.Tensor], bucket_bytes: int = GRADIENT_BUCKET_BYTES) -> list[list[int]]:
    """The gradients (their indices, in order) that are summed together: consecutive ones of one
    dtype and device, up to ``bucket_bytes`` (a larger gradient is a bucket of its own)."""
    buckets: list[list[int]] = []
    size = 0
    for index, gradient in enumerate(gradients):
        nbytes = gradient.numel() * gradient.element_size()
        last = gradients[buckets[-1][-1]] if buckets else None
        same_kind = last is not None and (last.dtype, last.device) == (gradient.dtype, gradient.device)
        if same_kind and size + nbytes <= bucket_bytes:
            buckets[-1].append(index)
            size += nbytes
        else:
            buckets.append([index])
            size = nbytes
    return buckets


def sum_gradients(parameters: list[torch.Tensor], bucket_bytes: int = GRADIENT_BUCKET_BYTES) -> None:
    """Add the processes' gradients up, in place: each process's loss is its share of the
    batch's loss, so their sum is the whole batch's gradient. (DDP averages instead, which
    would need every loss multiplied by the number of processes; DDP also needs the forward
    pass through its wrapper, and the learned conditionings are no module's.)"""
    # Every process passes the same model on at least one image, so the same parameters have gradients.
    gradients = [parameter.grad for parameter in parameters if parameter.grad is not None]
    for bucket in gradient_buckets(gradients, bucket_bytes):
        flat = torch.cat([gradients[index].reshape(-1) for index in bucket])
        torch.distributed.all_reduce(flat)
        for index, part in zip(bucket, flat.split([gradients[index].numel() for index in bucket])):
            gradients[index].copy_(part.view_as(gradients[index]))


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
    if torch.distributed.is_initialized():  # the processes torchrun started part cleanly
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    run(main)
