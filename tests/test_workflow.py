"""End to end: the whole DAG on the smoke config, through the real ``snakemake`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "configs" / "smoke.yaml"),
        "--cores",
        "2",
        *args,
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workdir = tmp_path_factory.mktemp("smoke")
    return workdir, snakemake(workdir)


def test_summary_lists_every_method_with_its_seeds(smoke_run):
    workdir, result = smoke_run
    summary = pd.read_csv(workdir / "results" / "smoke" / "summary.csv")
    assert summary.columns.tolist() == ["method", "kind", "n_seeds", "top1_mean", "top1_std", "n_added_per_class"]
    assert summary.method.tolist() == [
        "baseline",
        "real_upper_bound",
        "retrieve_text",
        "retrieve_image",
        "retrieve_caption",
        "gen_classname",
        "gen_clip_templates",
    ]
    assert summary.kind.tolist() == ["real", "real", "retrieve", "retrieve", "retrieve", "generate", "generate"]
    assert (summary.n_seeds == 1).all()
    assert summary.top1_mean.between(0, 100).all()
    assert summary.n_added_per_class.tolist() == [0, 3, 3, 3, 3, 3, 3]
    assert (workdir / "results" / "smoke" / "metrics" / "baseline" / "seed0.json").exists()
    # The run prints the table at the end.
    assert "| retrieve_text | retrieve | 1 |" in result.stdout + result.stderr


def test_real_upper_bound_adds_real_images_from_outside_the_subset(smoke_run):
    workdir, _ = smoke_run
    subset = pd.read_csv(workdir / "results" / "smoke" / "subset" / "train.csv")
    extra = pd.read_csv(workdir / "results" / "smoke" / "added" / "real_upper_bound" / "manifest.csv")
    train = pd.read_csv(workdir / "resources" / "miniworld-smoke" / "train" / "manifest.csv")
    assert extra.label.value_counts().sort_index().tolist() == [3] * 10
    assert set(extra.path).isdisjoint(subset.path)
    assert set(extra.path) <= set(train.path)


@pytest.mark.parametrize("method", ["retrieve_text", "retrieve_image", "retrieve_caption"])
def test_retrieval_adds_pool_images_with_class_labels(smoke_run, method):
    workdir, _ = smoke_run
    added = pd.read_csv(workdir / "results" / "smoke" / "added" / method / "manifest.csv")
    pool = pd.read_csv(workdir / "resources" / "miniworld-smoke" / "pool" / "manifest.csv")
    assert added.label.value_counts().sort_index().tolist() == [3] * 10
    assert added.path.is_unique
    assert set(added.path) <= set(pool.path)


@pytest.mark.parametrize("method", ["gen_classname", "gen_clip_templates"])
def test_generation_adds_decodable_images_per_class(smoke_run, method):
    workdir, _ = smoke_run
    added = pd.read_csv(workdir / "results" / "smoke" / "added" / method / "manifest.csv")
    names = (workdir / "resources" / "miniworld-smoke" / "classes.txt").read_text().split()
    assert all(names[label] in prompt for label, prompt in zip(added.label, added.prompt))
    assert added.label.value_counts().sort_index().tolist() == [3] * 10
    for path in added.path:
        with Image.open(workdir / path) as image:
            image.load()
            assert image.size == (16, 16)


def test_every_job_logged_and_a_rerun_has_nothing_to_do(smoke_run):
    workdir, _ = smoke_run
    logs = workdir / "logs" / "smoke"
    assert (logs / "train" / "gen_classname" / "seed0.log").stat().st_size > 0
    assert (logs / "miniworld" / "pretrain_diffusion.log").exists()
    rerun = snakemake(workdir, "--dry-run")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
