"""End to end: every generation method of the registry (configs/methods.yaml) through the real
``snakemake`` command on a tiny Stable Diffusion 1 pipeline (the tests' pre-trained one) and on tiny
random SDXL, SD3 and FLUX pipelines (tests/tiny_pipelines.py), one workflow per family on one small
shared world: the added images and manifests of each method, its personalisation first where it
has one. Classifiers are not trained: what is tested is that every method reaches each family's
pipeline as the registry means it. (make test's smoke run keeps a generation method for each path
through the workflow; this is where all of them run.)"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from augbench.files import read_classes, write_classes, write_manifest

from helpers import REPO, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REGISTRY = yaml.safe_load((REPO / "configs" / "methods.yaml").read_text())
GENERATION_METHODS = [name for name, entry in REGISTRY.items() if entry["kind"] == "generate"]
PERSONALISED = [name for name in GENERATION_METHODS if REGISTRY[name].get("personalise")]
CLASSES = 2
PER_CLASS = 2
SIZE = 16
# What each family needs beside the registry's entries: flow-matching models sample with a
# flow-matching scheduler; FLUX.1-dev's guidance_scale is its model input (the registry's 1.0 for
# gen_unconditional is refused there), and true classifier-free guidance runs where asked.
FAMILY_METHODS = {
    "sd1": {},
    "sdxl": {},
    "sd3": {"scheduler": "flow_euler"},
    "flux": {"scheduler": "flow_euler", "guidance_scale": 3.5},
}
TRUE_CFG = {"flux": ["gen_img2img", "gen_cluster_conditioning"]}
# T5 prompts cut short (the pipelines' own are 256 and 512 tokens).
FAMILY_DIFFUSION = {"sd1": {}, "sdxl": {}, "sd3": {"text_length": 8}, "flux": {"text_length": 8}}


@pytest.fixture(scope="module")
def world(miniworld, tmp_path_factory):
    """The mini-world's first two classes: their training and validation images, and its pool."""
    folder = tmp_path_factory.mktemp("family_world")
    names = read_classes(miniworld / "classes.txt")[:CLASSES]
    write_classes(folder / "classes.txt", names)
    for split in ("train", "val"):
        frame = pd.read_csv(miniworld / split / "manifest.csv")
        write_manifest(folder / f"{split}.csv", frame[frame.label < CLASSES])
    return folder


def family_config(family: str, model: str, world, pool: str, clip: str) -> dict:
    """The registry's generation methods, smoke-sized, on ``model``; nothing pre-trained by the workflow."""
    methods = {name: None for name, entry in REGISTRY.items() if entry["kind"] != "generate"}
    for name in GENERATION_METHODS:
        methods[name] = {"steps": 2, **FAMILY_METHODS[family]}
        if name in TRUE_CFG.get(family, []):
            methods[name]["true_cfg_scale"] = 2.0
        if name in PERSONALISED:
            # Learning rates that show in the images after two steps (the images are compared below).
            methods[name]["personalise"] = {"steps": 2, "batch_size": PER_CLASS, "lr": 0.5, "unet_lr": 0.1}
    methods["gen_cluster_conditioning"]["personalise"]["clusters"] = PER_CLASS
    return {
        "experiment": family,
        "miniworld": {"enabled": False, "pretrain": False},
        "dataset": {
            "classes": str(world / "classes.txt"),
            "train": str(world / "train.csv"),
            "val": str(world / "val.csv"),
        },
        "pool": {"manifest": pool},
        "subset": {"per_class": PER_CLASS, "seed": 0},
        "clip": {"model": clip, "num_workers": 0},
        "diffusion": {
            "model": model,
            "dtype": "float32",
            "batch_size": 8,
            "image_size": SIZE,
            **FAMILY_DIFFUSION[family],
        },
        "methods_file": "configs/methods.yaml",
        "methods": methods,
        "seeds": [0],
    }


def _images(manifest: pd.DataFrame, workdir) -> list[np.ndarray]:
    return [np.asarray(Image.open(workdir / path), dtype=float) for path in manifest.sort_values("path").path]


def _difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x - y).mean() for x, y in zip(a, b)]))


@pytest.mark.parametrize("family", list(FAMILY_METHODS))
def test_every_generation_method_runs_on_the_family(
    family, family_pipelines, tiny_pipeline, world, miniworld, tiny_clip, tmp_path
):
    pool = str(miniworld / "pool" / "manifest.csv")
    model = tiny_pipeline if family == "sd1" else family_pipelines[family]
    config = family_config(family, model, world, pool, tiny_clip)
    configfile = tmp_path / f"{family}.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "run"
    workdir.mkdir()
    results = workdir / "results" / family
    targets = [f"results/{family}/added/{name}/manifest.csv" for name in GENERATION_METHODS]
    started = time.perf_counter()
    snakemake(workdir, *targets, configfile=configfile, timeout=900)
    print(f"{family}: {len(GENERATION_METHODS)} generation methods in {time.perf_counter() - started:.0f} s")

    names = read_classes(world / "classes.txt")
    added = {}
    for name in GENERATION_METHODS:
        manifest = pd.read_csv(results / "added" / name / "manifest.csv", keep_default_na=False)
        added[name] = manifest
        assert (manifest.method == name).all() and manifest.path.is_unique
        assert manifest["class"].tolist() == [names[label] for label in manifest.label]
        counts = manifest.label.value_counts()
        if name == "gen_unconditional":  # zero-shot labelling keeps at most the quota per class
            assert 0 < counts.max() <= PER_CLASS and (manifest.prompt == "").all()
        else:
            assert counts.sort_index().tolist() == [PER_CLASS] * CLASSES
        assert (manifest.scheduler == FAMILY_METHODS[family].get("scheduler", "dpm_solver")).all()
        if name in TRUE_CFG.get(family, []):
            assert (manifest.true_cfg_scale == 2.0).all()
        else:
            assert "true_cfg_scale" not in manifest
        for path in manifest.path:
            with Image.open(workdir / path) as image:
                assert image.size == (SIZE, SIZE) and image.mode == "RGB"
    for name in PERSONALISED:
        assert list((results / "personalised" / name).glob("shard*.safetensors")), name
    assert set(added["gen_cluster_conditioning"].cluster) == set(range(PER_CLASS))
    assert (added["gen_img2img"].strength == 0.5).all()
    # Each image's seed is the same in every method, so a learned UNet adapter (same prompts) or
    # a learned conditioning (in place of the class prompt's) is all that tells them from gen_classname's.
    classname = _images(added["gen_classname"], workdir)
    for name in ("gen_dm_finetune", "gen_conditioning_ft"):
        assert _difference(_images(added[name], workdir), classname) > 0.5, name
