"""The study's ImageNet presets: their DAG is inspected with a dry run, without the data.

A stub data root (empty class-per-folder trees and an empty pool manifest) stands in
for the datasets, as docs/operations.md ("Dry runs") shows; the class list ships with the project.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from augbench import study
from augbench.stub import make_stub

from helpers import REPO, snakemake

PRESETS = ["imagenet10", "imagenet", "caltech256", "imagenet10-relaion", "imagenet10-datacomp"]
# What each preset reads: the dataset's trees (Caltech-256 is one tree that a job splits).
STUB_PATHS = {
    "imagenet10": ["data/imagenet/train", "data/imagenet/val"],
    "imagenet": ["data/imagenet/train", "data/imagenet/val"],
    "caltech256": ["data/caltech256/256_ObjectCategories"],
    "imagenet10-relaion": ["data/imagenet/train", "data/imagenet/val", "data/relaion2b-en/shards"],
    "imagenet10-datacomp": ["data/datacomp1b/metadata", "data/imagenet/train", "data/imagenet/val"],
}


def stub_data_root(workdir: Path, preset: str = "imagenet10") -> None:
    """What a dry run needs of the data (python -m augbench.stub), and the shipped class list."""
    made = make_stub(str(REPO / "configs" / f"{preset}.yaml"), str(workdir))
    pool = [] if "-" in preset else ["data/pool/manifest.csv"]  # the pools that exist name their own
    assert sorted(path.relative_to(workdir).as_posix() for path in made) == sorted(STUB_PATHS[preset] + pool)
    (workdir / "resources").symlink_to(REPO / "resources")


def registry_of(config: dict) -> dict:
    """A config's methods: its own entries merged into the registry file it names."""
    return study.merge_registry(study.read_registry(config["methods_file"]), config["methods"])


def _job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_dry_run_through_the_slurm_profile_needs_no_data(preset, tmp_path):
    configfile = REPO / "configs" / f"{preset}.yaml"
    config = yaml.safe_load(configfile.read_text())
    config["methods"] = registry_of(config)
    stub_data_root(tmp_path, preset)
    result = snakemake(tmp_path, "-n", "-q", "rules", profile=REPO / "profiles" / "slurm", configfile=configfile)
    counts = _job_counts(result.stdout + result.stderr)
    methods, seeds = config["methods"], config["seeds"]
    assert len(seeds) == 3
    assert counts["train"] == counts["evaluate"] == len(methods) * len(seeds)
    generated = [params for params in methods.values() if params["kind"] == "generate"]
    assert counts["generate"] == sum(params["shards"] for params in generated)
    # Trees are listed (and one tree split) by jobs, not while the DAG is built.
    assert counts["list_dataset"] == len(
        [path for path in STUB_PATHS[preset] if "/imagenet/" in path or "caltech" in path]
    )
    assert counts.get("split_dataset", 0) == (config["dataset"].get("split") is not None)
    # Sharded by config: hundreds to a few thousand jobs for 1,000 classes, not tens of thousands.
    assert 300 <= counts["total"] <= 3000
    # The pool: each stage runs a job per block of pool.shards_per_job shards (a round of search per method).
    pool = config["pool"]
    jobs = pool["shards"] // pool.get("shards_per_job", 1)
    assert counts["screen_pool"] == jobs
    # A pool whose embeddings ship with it is read part by part, not embedded.
    assert counts.get("embed_pool", 0) == (0 if pool.get("embeddings") else jobs)
    local = [
        params
        for params in methods.values()
        if params["kind"] == "retrieve" and params.get("backend") != "clip_service"
    ]
    assert counts["search_pool_shard"] == jobs * len(local) and counts["merge_pool_shards"] == len(local)


@pytest.mark.parametrize("preset", ["imagenet10", "caltech256"])
def test_every_method_of_the_registry_is_in_the_study_presets(preset):
    preset = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())
    demo = yaml.safe_load((REPO / "config.yaml").read_text())
    assert list(registry_of(preset)) == list(registry_of(demo))
    assert preset["classifier"] == yaml.safe_load((REPO / "configs" / "imagenet10.yaml").read_text())["classifier"]
    assert preset["classifier"]["arch"] == "resnet50"
    assert preset["diffusion"]["model"] == "CompVis/stable-diffusion-v1-4"
    assert preset["clip"]["model"] == "ViT-L-14" and preset["clip"]["pretrained"]


def test_the_caltech_preset_trains_on_30_per_class_of_a_60_per_class_split():
    preset = yaml.safe_load((REPO / "configs" / "caltech256.yaml").read_text())
    assert preset["dataset"]["split"]["train_per_class"] == 60 and preset["dataset"]["val"] is None
    assert preset["subset"]["per_class"] == 30
    assert registry_of(preset)["real_upper_bound"]["real_multiplier"] == 2  # all 60 of each class


def test_rulegraph_of_a_preset_draws_every_stage_without_data(tmp_path):
    stub_data_root(tmp_path)
    result = snakemake(tmp_path, "--rulegraph", profile=None, configfile=REPO / "configs" / "imagenet10.yaml")
    assert result.stdout.lstrip().startswith("digraph")
    for rule in ("list_dataset", "subset", "embed_pool", "retrieve", "personalise", "generate", "train", "evaluate"):
        assert f'label = "{rule}"' in result.stdout


# Dry-run plans checked below and in test_commands.py (each made once a session: conftest's
# planned): the presets, the smoke config, the demo config, and the smoke config with a
# kNN-service method.
PLANS = ["configs/imagenet10.yaml", "configs/caltech256.yaml", "configs/smoke.yaml", "config.yaml", "service"]
PLANS += ["configs/imagenet10-datacomp.yaml"]  # a pool read part by part where it lies


def dry_run_plan(workdir: Path, plan: str) -> str:
    """The jobs and shell commands a dry run of ``plan`` prints (a preset on a stub data root)."""
    if plan == "service":  # one method queries a kNN service; its results are downloaded and screened
        config = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
        service = {"url": "http://127.0.0.1:1/knn", "embed": "local"}
        config["methods"]["retrieve_image"].update(backend="clip_service", service=service)
        (workdir / "service.yaml").write_text(yaml.safe_dump(config))
        configfile = workdir / "service.yaml"
    else:
        configfile = REPO / plan
    if configfile.stem in PRESETS:
        stub_data_root(workdir, configfile.stem)
    else:
        (workdir / "resources").symlink_to(REPO / "resources")
    return snakemake(workdir, "-n", "-p", profile=None, configfile=configfile).stdout


@pytest.mark.parametrize("plan", PLANS)
def test_the_cost_table_reads_the_benchmark_of_every_job_that_writes_one(plan, planned, tmp_path):
    """The aggregate costs the benchmark files under the experiment's folder (and pre-training's
    where present): every benchmark a job writes must lie where it looks and in the layout it reads."""
    from augbench import cost

    output = planned(plan)
    written = set(re.findall(r"^\s+benchmark: (\S+)$", output, re.M))
    aggregate = re.search(r"python -m augbench.aggregate .*", output).group(0)
    root = re.search(r"--experiment-benchmarks (\S+)", aggregate).group(1)
    methods = [item.split("=")[0] for item in re.search(r"--method-kinds (.*?) --", aggregate).group(1).split()]
    seeds = [int(seed) for seed in re.findall(r"--seeds (\d+)", aggregate)]
    pretraining = set(re.findall(r"--benchmarks-if-present (\S+)", aggregate))
    for path in written:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    found = cost.experiment_benchmarks(tmp_path / root, methods, seeds)
    assert written and {str(Path(path).relative_to(tmp_path)) for path in found} | pretraining == written
    shared = {path.split("/")[3] for path in written if len(path.split("/")) == 5}
    assert {"embed_subset", "embed_val", "screen_pool"} <= shared
    assert ("embed_pool" in shared) == ("datacomp" not in plan)  # DataComp's pool ships embedded
    if plan == "service":
        assert any("/screen_downloads/retrieve_image/" in path for path in written)
