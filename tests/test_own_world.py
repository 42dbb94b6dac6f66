"""End to end: a small world of one's own (32 px RGB shapes, a captioned pool) on which the
workflow pre-trains its tiny CLIP and diffusion model and runs the study, by config alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image, ImageDraw

from helpers import snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHAPES = ["circle", "square", "triangle"]
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220)}
SIZE = 32


def draw(shape: str, colour: tuple[int, int, int], rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), tuple(int(v) for v in rng.integers(200, 256, size=3)))
    x, y = rng.integers(4, 10, size=2)
    side = int(rng.integers(14, 20))
    box = (int(x), int(y), int(x) + side, int(y) + side)
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    else:
        pen.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], fill=colour)
    return image


def make_world(root, per_class_train=6, per_class_val=4, pool_per_class=20, seed=0):
    """A class-per-folder training set, a validation manifest and a captioned pool, as a user might have."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(SHAPES) + "\n")
    val, pool = [], []
    for label, shape in enumerate(SHAPES):
        for i in range(per_class_train):
            folder = root / "train" / shape
            folder.mkdir(parents=True, exist_ok=True)
            draw(shape, list(COLOURS.values())[i % 3], rng).save(folder / f"{i}.png")
        for i in range(per_class_val):
            path = root / "val" / f"{shape}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            draw(shape, list(COLOURS.values())[i % 3], rng).save(path)
            val.append({"path": str(path), "label": label})
        for i in range(pool_per_class):
            name = list(COLOURS)[i % 3]
            path = root / "pool" / f"{shape}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            draw(shape, COLOURS[name], rng).save(path)
            pool.append({"path": str(path), "label": -1, "caption": f"a {name} {shape}"})
    pd.DataFrame(val).to_csv(root / "val.csv", index=False)
    pd.DataFrame(pool).to_csv(root / "pool.csv", index=False)


def own_config(root) -> dict:
    return {
        "experiment": "own",
        "miniworld": {
            "enabled": False,
            "pretrain": True,
            "image_size": SIZE,
            "clip": {"steps": 10, "batch_size": 32, "vision_width": 32, "text_width": 32, "layers": 1, "embed_dim": 32},
            "diffusion": {"vae_steps": 4, "unet_steps": 4, "batch_size": 8},
        },
        "dataset": {
            "classes": str(root / "classes.txt"),
            "train": str(root / "train"),
            "val": str(root / "val.csv"),
        },
        "pool": {"manifest": str(root / "pool.csv")},
        # A CLIP of 10 steps scores all images nearly alike: screen out exact copies only.
        "contamination": {"eval_threshold": 0.9999, "train_threshold": 0.9999},
        "subset": {"per_class": 3},
        "clip": {"model": "local-dir:models/own/clip", "num_workers": 0},
        "diffusion": {"model": "models/own/diffusion", "dtype": "float32", "batch_size": 9},
        "methods": {
            "baseline": {"kind": "real"},
            "retrieve_text": {"kind": "retrieve"},
            "gen_classname": {"kind": "generate", "steps": 2},
        },
        "classifier": {"arch": "resnet18", "image_size": SIZE, "epochs": 1, "batch_size": 8, "num_workers": 0},
        "seeds": [0],
    }


def test_own_small_world_pretrains_and_runs_the_study_by_config_alone(tmp_path):
    world = tmp_path / "world"
    make_world(world)
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump(own_config(world)))
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, configfile=config, timeout=600)
    assert "| retrieve_text | retrieve | 1 |" in result.stdout + result.stderr

    # The models were trained on the pool, at the configured resolution.
    clip = json.loads((workdir / "models/own/clip/open_clip_config.json").read_text())
    assert clip["model_cfg"]["vision_cfg"]["image_size"] == SIZE
    assert (workdir / "models/own/diffusion/model_index.json").exists()
    assert (workdir / "logs/own/miniworld/pretrain_diffusion.log").exists()

    results = workdir / "results" / "own"
    pool = pd.read_csv(world / "pool.csv")
    retrieved = pd.read_csv(results / "added" / "retrieve_text" / "manifest.csv")
    assert retrieved.label.value_counts().sort_index().tolist() == [3, 3, 3]
    assert set(retrieved.path) <= set(pool.path)
    generated = pd.read_csv(results / "added" / "gen_classname" / "manifest.csv")
    assert generated.label.value_counts().sort_index().tolist() == [3, 3, 3]
    for path in generated.path:
        with Image.open(workdir / path) as image:
            assert image.size == (SIZE, SIZE) and image.mode == "RGB"
    summary = pd.read_csv(results / "summary.csv")
    assert sorted(summary.method) == ["baseline", "gen_classname", "retrieve_text"]
    cost = pd.read_csv(results / "cost.csv").set_index("owner")
    assert {"shared: pretrain_clip", "shared: pretrain_diffusion"} <= set(cost.index)

    # Another experiment over the same models does not pre-train them again (that would overwrite
    # the models the first one's results came from); its cost table still counts that pre-training.
    plan = snakemake(workdir, "--dry-run", "-p", "--config", "experiment=own_again", configfile=config)
    output = plan.stdout + plan.stderr
    assert "rule train:" in output  # the new experiment's own jobs do run
    assert "rule pretrain_clip:" not in output and "rule pretrain_diffusion:" not in output
    pretraining = re.findall(r"--benchmarks-if-present (\S+)", output)
    assert {Path(path).parent.name for path in pretraining} == {"pretrain_clip", "pretrain_diffusion"}
    assert all((workdir / path).is_file() for path in pretraining)
