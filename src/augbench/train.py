"""Train a torchvision classifier on real plus added images, from scratch or from a weights file.

    python -m augbench.train --manifest subset.csv [--manifest added.csv] \
        --classes classes.txt --out model.safetensors --arch resnet18 --seed 0 ...

The weights go to ``--out`` (safetensors); the recipe that produced them, which
``augbench.evaluate`` needs to rebuild the model, goes beside it as JSON.

After an epoch that ends at least ``--checkpoint-minutes`` after the last checkpoint (0:
after every epoch) a checkpoint goes beside the output (``<out>.checkpoint/``: weights
as safetensors, optimiser, schedule and random states for ``torch.load(...,
weights_only=True)``). A restarted job (SLURM requeue after preemption, Snakemake
``--retries``, a rerun after a crash) resumes from it, so at most that long and one epoch
are recomputed, and finishes with the weights an uninterrupted run gives. A checkpoint
of other inputs or settings is ignored. It is removed once the weights are written.
(Epochs of a fraction of a second, as in the mini-world, would spend a tenth of the
training writing checkpoints.)

Several seeds in one job (``--seed 0 --out a.safetensors --seed 1 --out b.safetensors``)
train in turn and pay Python's and torch's start-up once. Each seed's last checkpoint
stays until every seed is done, so a rerun after a failure (which removes the job's outputs)
finds the finished seeds complete and retrains only the rest.

Several GPUs of one node: launched by ``torchrun --nproc_per_node N -m augbench.train``,
each process trains on its share of every batch (DistributedDataParallel; NCCL on
GPUs, gloo on CPUs), so the recipe's batch size stays the global one; process 0
writes checkpoints and outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from augbench.classifier import Recipe, build_model, initialise, model_input, recipe_path, train_transform
from augbench.cli import parse_bool, run, start_logging, use_threads
from augbench.files import atomic_path, read_classes, read_manifest, write_json
from augbench.images import ManifestImages, machine, pick_device
from augbench.optim import warmup_cosine

log = logging.getLogger(__name__)


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


def checkpoint_dir(out: str | Path) -> Path:
    return Path(f"{out}.checkpoint")


def run_fingerprint(manifests: list[str], classes_path: str, recipe: Recipe, seed: int) -> str:
    """What a checkpoint must have been made from to be resumed: inputs, recipe and seed."""
    digest = hashlib.sha1(json.dumps({"recipe": asdict(recipe), "seed": seed}, sort_keys=True).encode())
    for path in [*manifests, classes_path, *filter(None, [recipe.init_weights])]:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def save_checkpoint(
    folder: Path, epoch: int, loss: float, fingerprint: str, model, optimizer, schedule, generator
) -> None:
    """Write the state after ``epoch`` epochs; the folder is replaced whole, so it is never half-written."""
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(staging / "model.safetensors"))
    numpy_state = np.random.get_state()
    state = {
        "epoch": epoch,
        "loss": loss,
        "fingerprint": fingerprint,
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader_rng": generator.get_state(),
        "python_rng": list(random.getstate()[1]),
        "numpy_rng": torch.from_numpy(numpy_state[1].astype(np.int64)),
        "numpy_pos": int(numpy_state[2]),
    }
    torch.save(state, staging / "state.pt")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(folder: Path, fingerprint: str, model, optimizer, schedule, generator, device) -> tuple[int, float]:
    """Restore a matching checkpoint; return the epochs it completed (0 if none) and its last loss."""
    if not (folder / "state.pt").exists():
        return 0, float("nan")
    state = torch.load(folder / "state.pt", weights_only=True, map_location="cpu")
    if state["fingerprint"] != fingerprint:
        log.warning("ignoring checkpoint %s: it was made from other inputs or settings", folder)
        return 0, float("nan")
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(device)))
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    generator.set_state(state["loader_rng"])
    random.setstate((3, tuple(state["python_rng"]), None))
    np.random.set_state(("MT19937", state["numpy_rng"].numpy().astype(np.uint32), state["numpy_pos"]))
    log.info("resuming from checkpoint %s after epoch %d", folder, state["epoch"])
    return int(state["epoch"]), float(state["loss"])


def distributed_context() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process under torchrun; (0, 1, 0) when run alone."""
    return tuple(
        int(os.environ.get(name, default)) for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0))
    )


def train(
    manifests: list[str],
    classes_path: str,
    out: str,
    recipe: Recipe,
    seed: int,
    device: str = "auto",
    threads: int | None = None,
    keep_checkpoint: bool = False,
    checkpoint_minutes: float = 0,
) -> dict:
    """Train and write the weights to ``out``; return a short training record. A checkpoint is
    written after each epoch that ends ``checkpoint_minutes`` or more after the last one. With
    ``keep_checkpoint`` the last epoch's checkpoint is written and stays (a later call with the
    same inputs resumes it as complete) and the caller removes it."""
    use_threads(threads)
    classes = read_classes(classes_path)
    frame = combined_training_set(manifests, len(classes))
    rank, world, local_rank = distributed_context()
    dev = pick_device(device)
    if world > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
    # Each process draws its own augmentations; process 0 draws what a single process would.
    generator = seed_everything(seed + 1_000_003 * rank)
    # Decoded images stay in memory up to 512 MB (per loader worker): small sets skip decoding after epoch 1.
    dataset = ManifestImages(frame.path.tolist(), frame.label.tolist(), train_transform(recipe), keep_decoded_mb=512)
    batch_size = max(1, recipe.batch_size // world)  # per process, so the global batch is the recipe's
    drop_last = len(dataset) > recipe.batch_size
    sampler = None
    if world > 1:
        sampler = torch.utils.data.DistributedSampler(
            dataset, world, rank, shuffle=True, seed=seed, drop_last=drop_last
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=min(batch_size, len(dataset) // world),
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=recipe.num_workers,
        persistent_workers=recipe.num_workers > 0,
        pin_memory=dev.type == "cuda",
        generator=generator,
    )
    core = build_model(recipe.arch, len(classes))
    if recipe.init_weights:
        initialise(core, recipe.init_weights)
    core = core.to(dev, memory_format=torch.channels_last)
    model = torch.nn.parallel.DistributedDataParallel(core) if world > 1 else core
    optimizer = torch.optim.SGD(
        core.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=True
    )
    schedule = warmup_cosine(optimizer, recipe.epochs * len(loader), warmup_share=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    checkpoint = checkpoint_dir(out)
    fingerprint = run_fingerprint(manifests, classes_path, recipe, seed)
    done, last_loss = load_checkpoint(checkpoint, fingerprint, core, optimizer, schedule, generator, dev)
    if done and rank:
        seed_everything(seed + 1_000_003 * rank + done)  # the checkpoint holds process 0's random state
    model.train()
    last_checkpoint = time.monotonic()
    for epoch in tqdm(range(done, recipe.epochs), desc="train epochs", mininterval=5, disable=rank > 0):
        if sampler is not None:
            sampler.set_epoch(epoch)
        total, count = 0.0, 0
        for images, labels in loader:
            images = model_input(images, dev)
            labels = labels.to(dev, non_blocking=True)
            loss = loss_fn(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(labels)
            count += len(labels)
        if world > 1:
            sums = torch.tensor([total, count], dtype=torch.float64, device=dev)
            torch.distributed.all_reduce(sums)
            total, count = sums.tolist()
        last_loss = total / count
        log.info("epoch %d of %d: loss %.4f", epoch + 1, recipe.epochs, last_loss)
        last_epoch = epoch + 1 == recipe.epochs
        due = time.monotonic() - last_checkpoint >= checkpoint_minutes * 60
        # The last epoch's checkpoint is only needed by a caller that keeps it: the weights follow at once.
        if rank == 0 and (keep_checkpoint if last_epoch else due):
            save_checkpoint(checkpoint, epoch + 1, last_loss, fingerprint, core, optimizer, schedule, generator)
            last_checkpoint = time.monotonic()
    record = {
        "recipe": asdict(recipe),
        "seed": seed,
        "n_train_images": len(frame),
        "final_loss": last_loss,
        "resumed_after_epoch": done,
        "processes": world,
        "machine": machine(dev),
    }
    if rank == 0:
        with atomic_path(out) as tmp:
            save_file({k: v.contiguous().cpu() for k, v in core.state_dict().items()}, str(tmp))
        write_json(recipe_path(out), record)
        if not keep_checkpoint:
            shutil.rmtree(checkpoint, ignore_errors=True)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", action="append", required=True, help="training manifest; repeat to combine")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--seed", type=int, action="append", required=True, help="training seed; repeat, one per --out")
    parser.add_argument("--out", action="append", required=True, help="weights file (.safetensors) of each --seed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--checkpoint-minutes", type=float, default=0, help="least time between checkpoints (0: after every epoch)"
    )
    for field, default in asdict(Recipe()).items():
        flag = "--" + field.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, type=parse_bool, default=default)
        else:
            parser.add_argument(flag, type=str if default is None else type(default), default=default)
    args = parser.parse_args(argv)
    if len(args.seed) != len(args.out):
        parser.error(f"{len(args.seed)} --seed but {len(args.out)} --out: give one weights file per seed")
    # Under torchrun only process 0 reports progress; the others report problems.
    level = logging.INFO if distributed_context()[0] == 0 else logging.WARNING
    start_logging(level)
    recipe = Recipe(**{field: getattr(args, field) for field in asdict(Recipe())})
    several = len(args.seed) > 1
    for seed, out in zip(args.seed, args.out):
        record = train(
            args.manifest, args.classes, out, recipe, seed, args.device, args.threads, several, args.checkpoint_minutes
        )
        log.info(
            "seed %d: trained %s on %d images, final loss %.4f",
            seed,
            recipe.arch,
            record["n_train_images"],
            record["final_loss"],
        )
    if several and distributed_context()[0] == 0:
        for out in args.out:
            shutil.rmtree(checkpoint_dir(out), ignore_errors=True)


if __name__ == "__main__":
    run(main)
