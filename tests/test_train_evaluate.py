import json

import pytest

from augbench import evaluate, train
from augbench.files import write_manifest

RECIPE = train.Recipe(
    arch="resnet18",
    image_size=16,
    epochs=2,
    batch_size=16,
    lr=0.05,
    crop_scale_min=0.5,
    hflip=False,
    eval_crop_ratio=1.0,
    num_workers=0,
)


def test_train_then_evaluate_writes_weights_recipe_and_metrics(miniworld, tmp_path):
    classes = str(miniworld / "classes.txt")
    weights = tmp_path / "model.safetensors"
    record = train.train([str(miniworld / "train" / "manifest.csv")], classes, str(weights), RECIPE, seed=0, threads=2)
    assert weights.exists() and record["n_train_images"] == 80
    assert json.loads(weights.with_suffix(".json").read_text())["recipe"]["arch"] == "resnet18"
    metrics = evaluate.evaluate(
        str(weights), str(miniworld / "val" / "manifest.csv"), classes, str(tmp_path / "m.json"), num_workers=0
    )
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 100
    assert metrics["n_val_images"] == 50
    assert set(metrics["per_class_top1"]) == {
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    }
    assert json.loads((tmp_path / "m.json").read_text())["top1"] == metrics["top1"]


def test_same_seed_same_metrics(miniworld, tmp_path):
    classes = str(miniworld / "classes.txt")
    results = []
    for run in ("a", "b"):
        weights = tmp_path / f"{run}.safetensors"
        train.train([str(miniworld / "train" / "manifest.csv")], classes, str(weights), RECIPE, seed=4, threads=2)
        metrics = evaluate.evaluate(
            str(weights), str(miniworld / "val" / "manifest.csv"), classes, str(tmp_path / f"{run}.json"), num_workers=0
        )
        results.append(metrics["top1"])
    assert results[0] == results[1]


def test_added_images_are_combined_and_bad_labels_rejected(miniworld, tmp_path):
    import pandas as pd

    classes = str(miniworld / "classes.txt")
    real = str(miniworld / "train" / "manifest.csv")
    frame = pd.read_csv(real)
    write_manifest(tmp_path / "added.csv", frame.head(5))
    record = train.train([real, str(tmp_path / "added.csv")], classes, str(tmp_path / "m.safetensors"), RECIPE, seed=0)
    assert record["n_train_images"] == 85
    bad = frame.head(2).assign(label=10)
    write_manifest(tmp_path / "bad.csv", bad)
    with pytest.raises(ValueError, match="outside"):
        train.train([real, str(tmp_path / "bad.csv")], classes, str(tmp_path / "x.safetensors"), RECIPE, seed=0)


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="resnet_nope"):
        train.build_model("resnet_nope", 10)
