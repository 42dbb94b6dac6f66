"""Evaluate a trained classifier on the validation set: top-1, top-5 and per-class accuracy, and its
expected calibration error (``ece``, percentage points over 15 confidence bins; ``augbench.calibration``).

    python -m augbench.evaluate --model model.safetensors --manifest val.csv \
        --classes classes.txt --out metrics.json

Repeat ``--model`` and ``--out`` to evaluate several models (a method's seeds) in one process.
"""

from __future__ import annotations

import argparse
import logging

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from augbench.calibration import expected_calibration_error
from augbench.classifier import Recipe, build_model, eval_transform, recipe_path
from augbench.cli import start_logging, use_threads
from augbench.files import read_classes, read_json, read_manifest, write_json
from augbench.images import ManifestImages, pick_device

log = logging.getLogger(__name__)


@torch.inference_mode()
def evaluate(
    model_path: str,
    manifest: str,
    classes_path: str,
    out: str,
    device: str = "auto",
    batch_size: int = 256,
    num_workers: int = 2,
    threads: int | None = None,
) -> dict:
    use_threads(threads)
    classes = read_classes(classes_path)
    record = read_json(recipe_path(model_path))
    recipe = Recipe(**record["recipe"])
    dev = pick_device(device)
    model = build_model(recipe.arch, len(classes))
    model.load_state_dict(load_file(model_path))
    model.to(dev, memory_format=torch.channels_last).eval()
    frame = read_manifest(manifest)
    loader = torch.utils.data.DataLoader(
        ManifestImages(frame.path.tolist(), frame.label.tolist(), eval_transform(recipe)),
        batch_size=batch_size,
        num_workers=num_workers,
    )
    k = min(5, len(classes))
    correct1 = correct_k = 0
    per_class_correct = torch.zeros(len(classes))
    per_class_total = torch.zeros(len(classes))
    confidences, hits = [], []
    for images, labels in tqdm(loader, desc="evaluate", mininterval=5):
        logits = model(images.to(dev, memory_format=torch.channels_last)).cpu()
        top = logits.topk(k, dim=1).indices
        hit1 = top[:, 0] == labels
        correct1 += int(hit1.sum())
        correct_k += int((top == labels[:, None]).any(dim=1).sum())
        per_class_total += torch.bincount(labels, minlength=len(classes)).float()
        per_class_correct += torch.bincount(labels[hit1], minlength=len(classes)).float()
        # Calibration: the top softmax probability against whether the top-1 prediction is right.
        confidences.append(logits.float().softmax(dim=1).amax(dim=1))
        hits.append(hit1)
    n = len(frame)
    metrics = {
        "top1": 100.0 * correct1 / n,
        f"top{k}": 100.0 * correct_k / n,
        "ece": expected_calibration_error(torch.cat(confidences), torch.cat(hits)),
        "n_val_images": n,
        "per_class_top1": {
            name: (100.0 * float(per_class_correct[i] / per_class_total[i]) if per_class_total[i] else None)
            for i, name in enumerate(classes)
        },
        "seed": record["seed"],
        "n_train_images": record["n_train_images"],
    }
    write_json(out, metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="weights file; repeat, one per --out")
    parser.add_argument("--manifest", required=True, help="validation manifest")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", action="append", required=True, help="metrics JSON of each --model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if len(args.model) != len(args.out):
        parser.error(f"{len(args.model)} --model but {len(args.out)} --out: give one metrics file per model")
    start_logging()
    for model, out in zip(args.model, args.out):
        metrics = evaluate(
            model, args.manifest, args.classes, out, args.device, args.batch_size, args.num_workers, args.threads
        )
        log.info(
            "%s: top-1 %.2f%%, ECE %.2f points on %d images",
            model,
            metrics["top1"],
            metrics["ece"],
            metrics["n_val_images"],
        )


if __name__ == "__main__":
    main()
