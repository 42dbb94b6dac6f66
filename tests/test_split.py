"""One dataset split per class into training and validation images (the Caltech-256 protocol)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from PIL import Image

from augbench import dataset, split
from augbench.files import read_manifest

from helpers import REPO, SHIPPED_MODELS, snakemake


def _frame(sizes: dict[int, int]) -> pd.DataFrame:
    rows = [(f"c{label}/{label:03d}_{i:04d}.jpg", label) for label, n in sizes.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["path", "label"])


def test_each_class_gives_its_quota_to_training_and_the_rest_to_validation():
    frame = _frame({0: 12, 1: 9, 2: 20})
    train, val = split.split_per_class(frame, ["ak47", "bat", "cd"], train_per_class=5, seed=0)
    assert train.label.value_counts().sort_index().tolist() == [5, 5, 5]
    assert val.label.value_counts().sort_index().tolist() == [7, 4, 15]
    assert set(train.path).isdisjoint(val.path)
    assert sorted(train.path.tolist() + val.path.tolist()) == sorted(frame.path)


def test_validation_can_take_a_fixed_number_per_class_from_the_rest():
    frame = _frame({0: 12, 1: 9})
    train, val = split.split_per_class(frame, ["ak47", "bat"], train_per_class=5, seed=0, val_per_class=3)
    assert val.label.value_counts().sort_index().tolist() == [3, 3]
    assert set(train.path).isdisjoint(val.path)


def test_the_split_depends_on_the_seed_alone_not_on_row_order():
    frame = _frame({0: 30, 1: 30})
    names = ["ak47", "bat"]
    a, a_val = split.split_per_class(frame, names, 10, seed=3)
    b, b_val = split.split_per_class(frame.sample(frac=1, random_state=7), names, 10, seed=3)
    c, _ = split.split_per_class(frame, names, 10, seed=4)
    assert a.path.tolist() == b.path.tolist() and a_val.path.tolist() == b_val.path.tolist()
    assert a.path.tolist() != c.path.tolist()


def test_a_class_too_small_for_the_split_is_named():
    frame = _frame({0: 12, 1: 6})
    with pytest.raises(ValueError, match=r"class 1 \(bat\) has 6 images, fewer than the 7"):
        split.split_per_class(frame, ["ak47", "bat"], train_per_class=6, seed=0)
    with pytest.raises(ValueError, match=r"class 0 \(ak47\) has 12 images, fewer than the 15"):
        split.split_per_class(frame, ["ak47", "bat"], train_per_class=5, seed=0, val_per_class=10)


def test_a_dataset_listing_an_image_twice_is_refused():
    frame = pd.concat([_frame({0: 5}), _frame({0: 1})])
    with pytest.raises(ValueError, match="c0/000_0000.jpg more than once"):
        split.split_per_class(frame, ["ak47"], train_per_class=2, seed=0)


def test_clutter_is_left_out_of_a_listed_caltech_tree_and_its_split(tmp_path):
    root = tmp_path / "256_ObjectCategories"
    for folder, n in (("001.ak47", 6), ("002.american-flag", 5), ("257.clutter", 8)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4)).save(root / folder / f"{folder[:3]}_{i + 1:04d}.jpg")
    (root / "198.spider").mkdir()
    (root / "198.spider" / "RENAME2").write_text("not an image")  # as in the real tree
    (tmp_path / "classes.tsv").write_text("001.ak47\tak47\n002.american-flag\tamerican flag\n")
    dataset.main(["--root", str(root), "--classes", str(tmp_path / "classes.tsv"), "--out", str(tmp_path / "all.csv")])
    out = [str(tmp_path / name) for name in ("train.csv", "val.csv")]
    split.main(
        ["--manifest", str(tmp_path / "all.csv"), "--classes", str(tmp_path / "classes.tsv")]
        + ["--train-per-class", "3", "--seed", "0", "--train", out[0], "--val", out[1]]
    )
    train, val = read_manifest(out[0]), read_manifest(out[1])
    assert len(train) == 6 and len(val) == 5
    folders = {path.split("/")[-2] for path in pd.concat([train, val]).path}
    assert folders == {"001.ak47", "002.american-flag"}
    assert set(train.path).isdisjoint(val.path)


@pytest.mark.e2e
def test_a_tree_is_split_by_a_job_and_a_file_list_picks_the_subset_from_its_training_part(tmp_path):
    """The wiring: list_dataset -> split_dataset -> subset with subset.file_list, and screen_val
    on the split's validation part, on a tiny class-per-folder tree without the mini-world."""
    root = tmp_path / "data" / "tree"
    for folder in ("001.cat", "002.dog", "257.clutter"):
        (root / folder).mkdir(parents=True)
        for i in range(7):
            Image.new("RGB", (8, 8), (30 * i, 0, 0)).save(root / folder / f"{folder[:3]}_{i:04d}.jpg")
    (tmp_path / "classes.tsv").write_text("001.cat\tcat\n002.dog\tdog\n")
    (tmp_path / "pool.csv").write_text("path,label,caption\n")
    (tmp_path / "list.txt").write_text("")
    models = REPO / SHIPPED_MODELS
    config = {
        "experiment": "split",
        "dataset": {
            "classes": "classes.tsv",
            "train": "data/tree",
            "val": None,
            "split": {"train_per_class": 4, "seed": 1},
        },
        "pool": {"manifest": "pool.csv"},
        "subset": {"per_class": None, "file_list": "list.txt"},
        "clip": {"model": f"local-dir:{models / 'clip'}"},
        "diffusion": {"model": str(models / "diffusion")},
    }
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    results = tmp_path / "results" / "split"
    snakemake(tmp_path, "--cores", "1", "results/split/data/split/train.csv", profile=None, configfile=configfile)
    train = read_manifest(results / "data" / "split" / "train.csv")
    assert train.label.value_counts().sort_index().tolist() == [4, 4]
    # Two images per class: one listed by file name, one by its path below the tree.
    picked = train.groupby("label").head(2).path.map(lambda path: "/".join(path.split("/")[-2:]))
    lines = [name if i % 2 else name.split("/")[1] for i, name in enumerate(picked)]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    targets = ["results/split/subset/train.csv", "results/split/data/val_readable.csv"]
    snakemake(tmp_path, "--cores", "1", *targets, profile=None, configfile=configfile)
    subset = read_manifest(results / "subset" / "train.csv")
    val = read_manifest(results / "data" / "val_readable.csv")
    assert sorted(subset.path) == sorted(train.groupby("label").head(2).path)
    assert val.label.value_counts().sort_index().tolist() == [3, 3]
    assert set(val.path).isdisjoint(train.path)
    assert {path.split("/")[-2] for path in pd.concat([train, val]).path} == {"001.cat", "002.dog"}
