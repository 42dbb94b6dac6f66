"""The study's ImageNet presets: their DAG is inspected with a dry run, without the data.

A stub data root (empty class-per-folder trees and an empty pool manifest) stands in
for the datasets, as the README shows; the class list ships with the project.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from augbench.stub import make_stub

from helpers import REPO, snakemake

PRESETS = ["imagenet10", "imagenet"]


def stub_data_root(workdir: Path, preset: str = "imagenet10") -> None:
    """What a dry run needs of the data (python -m augbench.stub), and the shipped class list."""
    made = make_stub(str(REPO / "configs" / f"{preset}.yaml"), str(workdir))
    assert sorted(path.relative_to(workdir).as_posix() for path in made) == [
        "data/imagenet/train",
        "data/imagenet/val",
        "data/pool/manifest.csv",
    ]
    (workdir / "resources").symlink_to(REPO / "resources")


def _job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_dry_run_through_the_slurm_profile_needs_no_data(preset, tmp_path):
    configfile = REPO / "configs" / f"{preset}.yaml"
    config = yaml.safe_load(configfile.read_text())
    stub_data_root(tmp_path, preset)
    result = snakemake(tmp_path, "-n", "-q", "rules", profile=REPO / "profiles" / "slurm", configfile=configfile)
    counts = _job_counts(result.stdout + result.stderr)
    methods, seeds = config["methods"], config["seeds"]
    assert len(seeds) == 3
    assert counts["train"] == counts["evaluate"] == len(methods) * len(seeds)
    generated = [params for params in methods.values() if params["kind"] == "generate"]
    assert counts["generate"] == sum(params["shards"] for params in generated)
    assert counts["list_dataset"] == 2  # train and val are listed by jobs, not while the DAG is built
    # Sharded by config: hundreds to a few thousand jobs for 1,000 classes, not tens of thousands.
    assert 300 <= counts["total"] <= 3000


def test_every_method_of_the_registry_is_in_the_10_percent_preset():
    preset = yaml.safe_load((REPO / "configs" / "imagenet10.yaml").read_text())
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    assert list(preset["methods"]) == list(demo["methods"])
    assert preset["classifier"]["arch"] == "resnet50"
    assert preset["diffusion"]["model"] == "CompVis/stable-diffusion-v1-4"


def test_rulegraph_of_a_preset_draws_every_stage_without_data(tmp_path):
    stub_data_root(tmp_path)
    result = snakemake(tmp_path, "--rulegraph", profile=None, configfile=REPO / "configs" / "imagenet10.yaml")
    assert result.stdout.lstrip().startswith("digraph")
    for rule in ("list_dataset", "subset", "embed_pool", "retrieve", "personalise", "generate", "train", "evaluate"):
        assert f'label = "{rule}"' in result.stdout
