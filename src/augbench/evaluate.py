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
Repeat ``--model`` and ``--out`` to evaluate several models (a method's seeds) in one process, which
reads each set once for all of them.
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
def tally(models: list, loader, dev, n_classes: int, k: int, allowed: list[int] | None = None) -> list[Tally]:
    """Top-1, top-k, per-class hits and confidences of each of ``models`` over ``loader``, read
    once for all of them; with ``allowed``, the logits of the other classes are left out before
    softmax and ranking."""
    counts = [Tally(n_classes) for _ in models]
    allowed_index = None if allowed is None else torch.tensor(allowed)
    for batch in tqdm(loader, desc="evaluate", mininterval=5):
        images, labels = batch[0], batch[1]
        if len(batch) == 3:  # read with skip_unreadable: a reason per image, "" where it was read
            readable = torch.tensor([reason == "" for reason in batch[2]], dtype=torch.bool)
            unreadable = int((~readable).sum())
            for count in counts:
                count.unreadable += unreadable
            images, labels = images[readable], labels[readable]
            if len(labels) == 0:
                continue
        inputs = model_input(images, dev)
        for model, count in zip(models, counts):
            logits = model(inputs).cpu()
            if allowed_index is not None:
                logits = logits[:, allowed_index]
            top = logits.topk(min(k, logits.shape[1]), dim=1).indices
            if allowed_index is not None:
                top = allowed_index[top]
            hit1 = top[:, 0] == labels
            count.correct1 += int(hit1.sum())
            count.correct_k += int((top == labels[:, None]).any(dim=1).sum())
            count.n += len(labels)
            count.per_class_total += torch.bincount(labels, minlength=n_classes).float()
            count.per_class_correct += torch.bincount(labels[hit1], minlength=n_classes).float()
            # Calibration: the top softmax probability against whether the top-1 prediction is right.
            count.confidences.append(logits.float().softmax(dim=1).amax(dim=1))
            count.hits.append(hit1)
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
    """The metrics of one model, written to ``out`` (:func:`evaluate_models`)."""
    return evaluate_models(
        [model_path], manifest, classes_path, [out], device, batch_size, num_workers, threads, evaluation_sets
    )[0]


def evaluate_models(
    model_paths: list[str],
    manifest: str,
    classes_path: str,
    outs: list[str],
    device: str = "auto",
    batch_size: int = 256,
    num_workers: int = 2,
    threads: int | None = None,
    evaluation_sets: list[EvaluationSet] = (),
) -> list[dict]:
    """The metrics of each model (a method's seeds), written to its ``outs`` file.

    Models that take the same evaluation transform (size and crop ratio of their recipe) see each
    set in one pass: every batch is read and transformed once and given to all of them, so a
    method's seeds read the validation set once rather than once each (a demo evaluation job of
    five seeds took 4.0 to 4.3 s against 4.5 s).
    """
    if len(model_paths) != len(outs):
        raise ValueError(f"{len(model_paths)} models but {len(outs)} metrics files")
    use_threads(threads)
    classes = read_classes(classes_path)
    dev = pick_device(device)
    records = [read_json(recipe_path(path)) for path in model_paths]
    recipes = [Recipe(**record["recipe"]) for record in records]
    same_transform: dict[tuple, list[int]] = {}
    for index, recipe in enumerate(recipes):
        same_transform.setdefault((recipe.image_size, recipe.eval_crop_ratio), []).append(index)
    val = read_manifest(manifest)
    metrics: list[dict] = [{} for _ in model_paths]
    for indices in same_transform.values():
        recipe = recipes[indices[0]]
        models = []
        for index in indices:
            model = build_model(recipes[index].arch, len(classes))
            model.load_state_dict(load_file(model_paths[index]))
            models.append(model.to(dev, memory_format=torch.channels_last).eval())

        def loader(frame: pd.DataFrame, skip_unreadable: bool, recipe=recipe):
            images = ManifestImages(frame.path.tolist(), frame.label.tolist(), eval_transform(recipe), skip_unreadable)
            return torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=num_workers)

        k = min(5, len(classes))
        # The validation set was screened by its own job: an unreadable image here is an error.
        for index, counts in zip(indices, tally(models, loader(val, skip_unreadable=False), dev, len(classes), k)):
            metrics[index] = validation_metrics(counts, k, classes, records[index])
        for evaluation_set in evaluation_sets:
            images = loader(evaluation_set.images, skip_unreadable=True)
            tallies = tally(models, images, dev, len(classes), 1, evaluation_set.classes)
            for index, counts in zip(indices, tallies):
                metrics[index].update(set_metrics(counts, evaluation_set.name))
    for out, model_metrics in zip(outs, metrics):
        write_json(out, model_metrics)
    return metrics


def validation_metrics(counts: Tally, k: int, classes: list[str], record: dict) -> dict:
    """A model's figures on the validation set, with the seed and training-set size of its record."""
    n = counts.n
    return {
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


def set_metrics(counts: Tally, name: str) -> dict:
    """A model's figures on the evaluation set ``name``."""
    if counts.n == 0:
        raise ValueError(f"evaluation set {name}: none of its images can be read")
    return {
        f"top1_{name}": 100.0 * counts.correct1 / counts.n,
        f"ece_{name}": expected_calibration_error(torch.cat(counts.confidences), torch.cat(counts.hits)),
        f"n_images_{name}": counts.n,
        f"n_unreadable_{name}": counts.unreadable,
    }


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
    all_metrics = evaluate_models(
        args.model,
        args.manifest,
        args.classes,
        args.out,
        args.device,
        args.batch_size,
        args.num_workers,
        args.threads,
        evaluation_sets,
    )
    for model, metrics in zip(args.model, all_metrics):
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
