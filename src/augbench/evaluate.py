"""Evaluate a trained classifier on the validation set: top-1, top-5 and per-class accuracy, and its
expected calibration error (``ece``, percentage points over 15 confidence bins; ``augbench.calibration``);
and on each further evaluation set (``--evaluation-set NAME=IMAGES``): ``top1_<name>`` and ``ece_<name>``.

    python -m augbench.evaluate --model model.safetensors --manifest val.csv \
        --classes classes.txt --out metrics.json \
        [--evaluation-set sketch=data/imagenet-sketch] [--evaluation-set-classes r=imagenet_r.tsv ...]

An evaluation set is a manifest (labels are lines of ``--classes``) or a class-per-folder tree.
With a class list of its own (``--evaluation-set-classes NAME=LIST``, lines ``<folder><TAB><class>``
or ``<class>``, each class a name or folder of ``--classes``), the tree's folders are the list's and
the model's logits are restricted to the list's classes, as ImageNet-R and -A are evaluated on
their 200 classes. Unreadable images of a set are skipped and counted (``n_unreadable_<name>``).
Repeat ``--model`` and ``--out`` to evaluate several models (a method's seeds) in one process.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field

import pandas as pd
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from augbench.calibration import expected_calibration_error
from augbench.classifier import Recipe, build_model, eval_transform, model_input, recipe_path
from augbench.cli import run, start_logging, use_threads
from augbench.files import list_tree, read_class_folders, read_classes, read_json, read_manifest, write_json
from augbench.images import ManifestImages, pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSet:
    """Images beside the validation set: labels are lines of the dataset's class list, and
    ``classes`` (those labels, sorted) are the classes the model may answer; None: all of them."""

    name: str
    images: pd.DataFrame
    classes: list[int] | None = None


def set_class_labels(set_classes_path: str, classes_path: str) -> tuple[list[str], list[int]]:
    """(folder, label) of each line of a set's class list: its class is a name or a folder of the
    dataset's class list (ImageNet-R's list names WordNet ids, ImageNet-V2's folders are 0..999)."""
    names, folders = read_classes(classes_path), read_class_folders(classes_path)
    label_of = {folder: label for label, folder in enumerate(folders)}
    label_of.update({name: label for label, name in enumerate(names)})
    set_folders, set_names = read_class_folders(set_classes_path), read_classes(set_classes_path)
    unknown = [name for name in set_names if name not in label_of]
    if unknown:
        raise ValueError(
            f"class list {set_classes_path} names {len(unknown)} class(es) that {classes_path} lacks, "
            f"e.g. {unknown[0]!r}"
        )
    labels = [label_of[name] for name in set_names]
    if len(set(labels)) != len(labels):
        raise ValueError(f"class list {set_classes_path} names a class twice")
    return set_folders, labels


def read_evaluation_set(
    name: str, images: str, classes_path: str, set_classes_path: str | None = None
) -> EvaluationSet:
    """An evaluation set from a manifest or a class-per-folder tree (listed here: a few seconds for
    50,000 files, and no job of its own)."""
    if set_classes_path is None:
        folders, labels = read_class_folders(classes_path), list(range(len(read_classes(classes_path))))
    else:
        folders, labels = set_class_labels(set_classes_path, classes_path)
    if images.endswith((".csv", ".parquet")):
        frame = read_manifest(images)
        outside = sorted(set(frame.label) - set(labels))
        if outside:
            raise ValueError(f"evaluation set {name}: {images} has labels {outside[:5]} outside its classes")
    else:
        frame = list_tree(images, folders)
        frame["label"] = [labels[position] for position in frame.label]
    if frame.empty:
        raise ValueError(f"evaluation set {name}: {images} holds no images")
    return EvaluationSet(name, frame, None if set_classes_path is None else sorted(labels))


@dataclass
class Tally:
    """Counts over the batches of one set."""

    n_classes: int
    correct1: int = 0
    correct_k: int = 0
    n: int = 0
    unreadable: int = 0
    per_class_correct: torch.Tensor = field(init=False)
    per_class_total: torch.Tensor = field(init=False)
    confidences: list = field(default_factory=list)
    hits: list = field(default_factory=list)

    def __post_init__(self):
        self.per_class_correct = torch.zeros(self.n_classes)
        self.per_class_total = torch.zeros(self.n_classes)


@torch.inference_mode()
def tally(model, loader, dev, n_classes: int, k: int, allowed: list[int] | None = None) -> Tally:
    """Top-1, top-k, per-class hits and confidences of ``model`` over ``loader``; with ``allowed``,
    the logits of the other classes are left out before softmax and ranking."""
    counts = Tally(n_classes)
    allowed_index = None if allowed is None else torch.tensor(allowed)
    for batch in tqdm(loader, desc="evaluate", mininterval=5):
        images, labels = batch[0], batch[1]
        if len(batch) == 3:  # read with skip_unreadable: a reason per image, "" where it was read
            readable = torch.tensor([reason == "" for reason in batch[2]], dtype=torch.bool)
            counts.unreadable += int((~readable).sum())
            images, labels = images[readable], labels[readable]
            if len(labels) == 0:
                continue
        logits = model(model_input(images, dev)).cpu()
        if allowed_index is not None:
            logits = logits[:, allowed_index]
        top = logits.topk(min(k, logits.shape[1]), dim=1).indices
        if allowed_index is not None:
            top = allowed_index[top]
        hit1 = top[:, 0] == labels
        counts.correct1 += int(hit1.sum())
        counts.correct_k += int((top == labels[:, None]).any(dim=1).sum())
        counts.n += len(labels)
        counts.per_class_total += torch.bincount(labels, minlength=n_classes).float()
        counts.per_class_correct += torch.bincount(labels[hit1], minlength=n_classes).float()
        # Calibration: the top softmax probability against whether the top-1 prediction is right.
        counts.confidences.append(logits.float().softmax(dim=1).amax(dim=1))
        counts.hits.append(hit1)
    return counts


def evaluate(
    model_path: str,
    manifest: str,
    classes_path: str,
    out: str,
    device: str = "auto",
    batch_size: int = 256,
    num_workers: int = 2,
    threads: int | None = None,
    evaluation_sets: list[EvaluationSet] = (),
) -> dict:
    use_threads(threads)
    classes = read_classes(classes_path)
    record = read_json(recipe_path(model_path))
    recipe = Recipe(**record["recipe"])
    dev = pick_device(device)
    model = build_model(recipe.arch, len(classes))
    model.load_state_dict(load_file(model_path))
    model.to(dev, memory_format=torch.channels_last).eval()

    def loader(frame: pd.DataFrame, skip_unreadable: bool):
        images = ManifestImages(frame.path.tolist(), frame.label.tolist(), eval_transform(recipe), skip_unreadable)
        return torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=num_workers)

    k = min(5, len(classes))
    # The validation set was screened by its own job: an unreadable image here is an error.
    counts = tally(model, loader(read_manifest(manifest), skip_unreadable=False), dev, len(classes), k)
    n = counts.n
    metrics = {
        "top1": 100.0 * counts.correct1 / n,
        f"top{k}": 100.0 * counts.correct_k / n,
        "ece": expected_calibration_error(torch.cat(counts.confidences), torch.cat(counts.hits)),
        "n_val_images": n,
        "per_class_top1": {
            name: (
                100.0 * float(counts.per_class_correct[i] / counts.per_class_total[i])
                if counts.per_class_total[i]
                else None
            )
            for i, name in enumerate(classes)
        },
        "seed": record["seed"],
        "n_train_images": record["n_train_images"],
        # Models trained before the record named its machine have none.
        "trained_on": record.get("machine"),
    }
    for evaluation_set in evaluation_sets:
        counts = tally(
            model, loader(evaluation_set.images, skip_unreadable=True), dev, len(classes), 1, evaluation_set.classes
        )
        if counts.n == 0:
            raise ValueError(f"evaluation set {evaluation_set.name}: none of its images can be read")
        metrics[f"top1_{evaluation_set.name}"] = 100.0 * counts.correct1 / counts.n
        metrics[f"ece_{evaluation_set.name}"] = expected_calibration_error(
            torch.cat(counts.confidences), torch.cat(counts.hits)
        )
        metrics[f"n_images_{evaluation_set.name}"] = counts.n
        metrics[f"n_unreadable_{evaluation_set.name}"] = counts.unreadable
    write_json(out, metrics)
    return metrics


def named(items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SystemExit(f"{option} {item!r}: give NAME=PATH")
        pairs[name] = value
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="weights file; repeat, one per --out")
    parser.add_argument("--manifest", required=True, help="validation manifest")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", action="append", required=True, help="metrics JSON of each --model")
    parser.add_argument(
        "--evaluation-set",
        action="append",
        default=[],
        metavar="NAME=IMAGES",
        help="a further evaluation set, a manifest or class-per-folder tree; repeat for each",
    )
    parser.add_argument(
        "--evaluation-set-classes",
        action="append",
        default=[],
        metavar="NAME=LIST",
        help="the class list of an evaluation set that has a subset of the classes (or folders named otherwise)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if len(args.model) != len(args.out):
        parser.error(f"{len(args.model)} --model but {len(args.out)} --out: give one metrics file per model")
    start_logging()
    images = named(args.evaluation_set, "--evaluation-set")
    set_classes = named(args.evaluation_set_classes, "--evaluation-set-classes")
    if set(set_classes) - set(images):
        parser.error(f"--evaluation-set-classes for set(s) {sorted(set(set_classes) - set(images))} not given")
    evaluation_sets = [
        read_evaluation_set(name, path, args.classes, set_classes.get(name)) for name, path in images.items()
    ]
    for evaluation_set in evaluation_sets:
        log.info("evaluation set %s: %d images", evaluation_set.name, len(evaluation_set.images))
    for model, out in zip(args.model, args.out):
        metrics = evaluate(
            model,
            args.manifest,
            args.classes,
            out,
            args.device,
            args.batch_size,
            args.num_workers,
            args.threads,
            evaluation_sets,
        )
        log.info(
            "%s: top-1 %.2f%%, ECE %.2f points on %d images",
            model,
            metrics["top1"],
            metrics["ece"],
            metrics["n_val_images"],
        )
        for evaluation_set in evaluation_sets:
            log.info("%s: top-1 %.2f%% on %s", model, metrics[f"top1_{evaluation_set.name}"], evaluation_set.name)


if __name__ == "__main__":
    run(main)
