"""Training images/s with real JPEG decoding and the training transforms (the train module's
dataset and DataLoader settings) over the same loop fed from in-memory tensors:
ResNet-50 from scratch, 224 px, SGD steps with backward.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from bench_embed import photos

BATCH, STEPS, WORKERS = 16, 6, 2


def _train_steps(model, optimizer, batches) -> float:
    """Images/s over the batches after the first (which warms up the workers and allocator)."""
    from augbench.classifier import model_input

    loss_fn = torch.nn.CrossEntropyLoss()
    count, start = 0, None
    for step, (images, labels) in enumerate(batches):
        if step == 1:
            start, count = time.perf_counter(), 0
        loss = loss_fn(model(model_input(images, torch.device("cpu"))), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += len(labels)
    return count / (time.perf_counter() - start)


def measure() -> dict:
    from augbench.classifier import Recipe, build_model, train_transform
    from augbench.images import ManifestImages

    recipe = Recipe(arch="resnet50", image_size=224, batch_size=BATCH, num_workers=WORKERS)
    with tempfile.TemporaryDirectory() as tmp:
        paths = photos(Path(tmp), BATCH * (STEPS + 1))
        labels = [i % 10 for i in range(len(paths))]
        dataset = ManifestImages(paths, labels, train_transform(recipe))
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=BATCH, shuffle=True, num_workers=WORKERS, persistent_workers=True, drop_last=True
        )
        model = build_model("resnet50", 10).to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        decoded = _train_steps(model, optimizer, loader)
        # The same images, transformed once and kept in memory.
        tensors = [next(iter(loader)) for _ in range(STEPS + 1)]
        in_memory = _train_steps(model, optimizer, tensors)
    print(f"   decoding {decoded:.2f} images/s, in memory {in_memory:.2f} images/s")
    return {
        "train_images_per_s": decoded,
        "train_in_memory_images_per_s": in_memory,
        "train_loader_ratio": decoded / in_memory,
    }
