"""End to end: the whole DAG on the smoke config, through the real ``snakemake`` command."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import HUB_TOKEN
from helpers import SMOKE, snakemake

pytestmark = pytest.mark.e2e


METHODS = {
    "baseline": "real",
    "real_upper_bound": "real",
    "retrieve_text": "retrieve",
    "retrieve_image": "retrieve",
    "retrieve_caption": "retrieve",
    "gen_classname": "generate",
    "gen_unconditional": "generate",
    "gen_img2img": "generate",
    "gen_cluster_conditioning": "generate",
    "gen_ti_dm_finetune": "generate",
}
PERSONALISED = {"gen_cluster_conditioning": 2, "gen_ti_dm_finetune": 1}  # shards


def _results(workdir: Path) -> Path:
    return workdir / "results" / "smoke"


def test_summary_lists_every_method_with_its_seeds(smoke_run):
    workdir, result = smoke_run
    summary = pd.read_csv(_results(workdir) / "summary.csv")
    differences = [
        f"vs_{name}{part}" for name in ("baseline", "best_retrieval") for part in ("", "_ci_low", "_ci_high")
    ]
    assert summary.columns.tolist() == [
        *["method", "kind", "n_seeds", "top1_mean", "top1_std", "ece_mean", "ece_std", "n_added_per_class"],
        *differences,
        # The mini-world's shifted evaluation set (evaluation_sets.web).
        *["top1_web_mean", "top1_web_std", "ece_web_mean", "ece_web_std"],
        *["top1_web_vs_baseline", "top1_web_vs_baseline_ci_low", "top1_web_vs_baseline_ci_high"],
        *["gpu_hours", "cpu_hours", "gpu_hours_per_1k_added"],
        *["learned_bytes", "learned_parameters"],
    ]
    assert summary.method.tolist() == list(METHODS)
    # What personalisation learned has a size; the other methods learned nothing.
    learned = summary.set_index("method").learned_parameters
    assert set(learned[learned > 0].index) == set(PERSONALISED) and learned.drop(list(PERSONALISED)).isna().all()
    assert summary.kind.tolist() == list(METHODS.values())
    assert (summary.n_seeds == 1).all()
    assert summary.top1_mean.between(0, 100).all()
    assert summary.ece_mean.between(0, 100).all()  # every metrics file of a fresh run has its ECE
    added = dict(zip(summary.method, summary.n_added_per_class))
    assert added.pop("baseline") == 0
    # Zero-shot labelling keeps at most the quota per class; every other method meets it.
    assert 0 < added.pop("gen_unconditional") <= 3
    assert set(added.values()) == {3}
    assert summary.top1_web_mean.between(0, 100).all()
    metrics = json.loads((_results(workdir) / "metrics" / "baseline" / "seed0.json").read_text())
    assert metrics["n_images_web"] == metrics["n_val_images"] == 100  # the validation digits, shifted
    assert "web: top-1 % (mean ± std)" in (_results(workdir) / "summary.md").read_text()
    # The run prints the table at the end, with no spread for its one seed, and says what one seed supports.
    printed = result.stdout + result.stderr
    assert "| retrieve_text | retrieve | 1 |" in printed and "± 0.00" not in printed
    assert summary.top1_std.isna().all() and summary.ece_std.isna().all()
    assert "What the table supports: With one seed the table supports no statement" in printed


def test_real_upper_bound_adds_real_images_from_outside_the_subset(smoke_run):
    workdir, _ = smoke_run
    subset = pd.read_csv(_results(workdir) / "subset" / "train.csv")
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
    # The pool is two shards (pool.shards: 2): embedded, screened and searched by a job each, one row per
    # pool image; a merge joined the two searches' candidates.
    results = _results(workdir)
    shards = sorted((results / "embed" / "pool_images").glob("*.npy"))
    assert [path.name for path in shards] == ["shard0.npy", "shard1.npy"]
    assert sum(len(np.load(path)) for path in shards) == len(pool)
    searched = sorted(path.name for path in (results / "retrieve" / method / "round0").glob("shard*.npz"))
    assert searched == ["shard0.npz", "shard1.npz"]


@pytest.mark.parametrize("method", [name for name, kind in METHODS.items() if kind == "generate"])
def test_generation_adds_decodable_images_with_their_record(smoke_run, method):
    workdir, _ = smoke_run
    added = pd.read_csv(_results(workdir) / "added" / method / "manifest.csv", keep_default_na=False)
    names = (workdir / "resources" / "miniworld-smoke" / "classes.txt").read_text().split()
    assert (added.method == method).all()
    assert added["class"].tolist() == [names[label] for label in added.label]
    assert added.seed.is_unique and added.path.is_unique
    if method == "gen_unconditional":
        assert (added.prompt == "").all() and added.zero_shot_score.notna().all()
        assert added.label.value_counts().max() <= 3
    else:
        assert added.label.value_counts().sort_index().tolist() == [3] * 10
    if method in ("gen_classname", "gen_img2img"):
        assert all(names[label] in prompt for label, prompt in zip(added.label, added.prompt))
    if method == "gen_ti_dm_finetune":
        assert all(f"<class-{label}>" in prompt for label, prompt in zip(added.label, added.prompt))
    if method == "gen_img2img":
        subset = pd.read_csv(_results(workdir) / "subset" / "train.csv")
        label_of = dict(zip(subset.path, subset.label))
        assert [label_of[source] for source in added.source] == added.label.tolist()
        assert (added.strength == 0.5).all()
    if method == "gen_cluster_conditioning":
        assert set(added.cluster) == {0, 1}
    for path in added.path:
        with Image.open(workdir / path) as image:
            image.load()
            assert image.size == (16, 16)


@pytest.mark.parametrize("method, shards", [("gen_classname", 2), ("gen_unconditional", 2)])
def test_generation_runs_in_its_configured_shards(smoke_run, method, shards):
    workdir, _ = smoke_run
    folder = _results(workdir) / "added" / method
    parts = sorted((folder / "shards").glob("shard*.csv"))
    assert [path.name for path in parts] == [f"shard{k}.csv" for k in range(shards)]
    made = pd.concat([pd.read_csv(path) for path in parts])
    kept = pd.read_csv(folder / "manifest.csv")
    assert set(kept.path) <= set(made.path)
    if method == "gen_unconditional":  # the most confident half of each class, chosen over both shards
        for label, group in made.groupby("label"):
            chosen = kept[kept.label == label]
            if len(chosen):
                assert chosen.zero_shot_score.min() >= group.zero_shot_score.median() - 1e-6
    else:
        assert len(kept) == len(made)


def test_personalisation_artefacts_come_from_their_own_sharded_jobs(smoke_run):
    workdir, _ = smoke_run
    for method, shards in PERSONALISED.items():
        artefacts = sorted((_results(workdir) / "personalised" / method).glob("*.safetensors"))
        assert [path.name for path in artefacts] == [f"shard{k}.safetensors" for k in range(shards)], method
    # Generating again must not learn again: the artefacts are inputs, not steps of generation.
    targets = [f"results/smoke/added/{method}/manifest.csv" for method in PERSONALISED]
    rerun = snakemake(workdir, "--dry-run", "--forcerun", "generate", "--", *targets)
    output = rerun.stdout + rerun.stderr
    regenerated = set(re.findall(r"wildcards: method=(\w+), shard=\d+", output))
    assert regenerated == set(PERSONALISED) and "rule personalise" not in output


def test_every_job_logged_and_a_rerun_has_nothing_to_do(smoke_run):
    workdir, _ = smoke_run
    logs = workdir / "logs" / "smoke"
    assert (logs / "train" / "gen_classname" / "seed0.log").stat().st_size > 0
    assert (logs / "miniworld" / "data.log").exists()
    rerun = snakemake(workdir, "--dry-run")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr


def test_changing_one_method_reruns_only_that_method(smoke_run, tmp_path):
    workdir, _ = smoke_run
    change = tmp_path / "change.yaml"
    change.write_text(yaml.safe_dump({"methods": {"gen_img2img": {"strength": 0.6}}}))
    result = snakemake(workdir, "--dry-run", "--configfile", str(SMOKE), str(change))
    output = result.stdout + result.stderr
    methods = set(re.findall(r"wildcards: method=([\w-]+)", output))
    rules = set(re.findall(r"^(?:local)?rule (\w+):", output, flags=re.MULTILINE))
    assert methods == {"gen_img2img"}, output[-3000:]
    assert rules == {"generate", "collect_generated", "train", "evaluate", "aggregate", "figures", "all"}, rules


def _report_files(html: str) -> dict[str, tuple[str, bytes]]:
    """The files a Snakemake HTML report embeds: name -> (mime type, content)."""
    found = re.findall(r'"data_uri": "data:([^;]+);charset=utf8;filename=([^;]+);base64,([A-Za-z0-9+/=]*)"', html)
    return {name: (mime, base64.b64decode(data)) for mime, name, data in found}


def test_html_report_holds_the_tables_figures_and_image_grids(smoke_run):
    workdir, _ = smoke_run
    snakemake(workdir, "--report", "report.html")
    files = _report_files((workdir / "report.html").read_text())
    for table in ("summary.csv", "per_class.csv", "cost.csv", "unreadable.csv", "provenance.json"):
        assert table in files, table
    summary = pd.read_csv(io.BytesIO(files["summary.csv"][1]))
    assert summary.method.tolist() == list(METHODS)
    grids = sorted(name for name in files if name.startswith("class"))
    assert len(grids) == 3  # report.grid_classes
    for name in ["top1.png", "top1_vs_cost.png", "top1_vs_added.png", *grids]:
        mime, content = files[name]
        assert mime == "image/png" and content, name
        with Image.open(io.BytesIO(content)) as image:
            image.load()
            assert min(image.size) > 50, name
    # Every method's images, and the real ones, are rows of a grid.
    with Image.open(_results(workdir) / "figures" / "grids" / grids[0]) as grid:
        # A row of 1.1 inch at 120 dpi, less margins, for the real images and for each method.
        assert grid.size[1] > (1 + len(METHODS)) * 40
    provenance = json.loads(files["provenance.json"][1])
    assert set(provenance["methods"]) == set(METHODS) and provenance["packages"]["diffusers"]


def test_cost_table_lists_each_method_and_the_shared_jobs_apart(smoke_run):
    workdir, _ = smoke_run
    cost = pd.read_csv(_results(workdir) / "cost.csv").set_index("owner")
    assert set(METHODS) <= set(cost.index)
    shared = {owner for owner in cost.index if owner.startswith("shared: ")}
    # (the shipped models' pre-training is no job of this run: tests/test_own_world.py counts one)
    assert shared == {
        f"shared: {rule}" for rule in ("embed_pool", "embed_pool_captions", "embed_subset", "embed_val", "screen_pool")
    }
    # Generation methods ran GPU-rule jobs (generation, training), evaluation alone does not count.
    assert (cost.loc[[m for m, kind in METHODS.items() if kind == "generate"], "gpu_hours"] > 0).all()
    assert cost.loc["gen_classname", "jobs"] == 2 + 1 + 1  # two generation shards, training, evaluation
    assert (cost.loc[list(METHODS), "cpu_hours"] > 0).all()
    # Snakemake samples a job's CPU time while it runs: a job of a second or two may show none.
    assert (cost.cpu_hours >= 0).all()


@pytest.mark.slow  # a training and an evaluation more on make test's longest path; make demo runs this setting
def test_one_job_per_method_trains_all_its_seeds_as_their_own_jobs_would(smoke_run, tmp_path):
    """classifier.seeds_in_one_job (the demo's setting) changes how many jobs run, not what they compute."""
    workdir, _ = smoke_run
    grouped = tmp_path / "grouped.yaml"
    config = {"experiment": "smoke_grouped", "seeds": [0, 1], "classifier": {"seeds_in_one_job": True}}
    grouped.write_text(yaml.safe_dump(config))
    targets = [f"results/smoke_grouped/metrics/baseline/seed{seed}.json" for seed in (0, 1)]
    result = snakemake(workdir, *targets, "-p", "--configfile", str(SMOKE), str(grouped))
    output = result.stdout + result.stderr
    assert len(re.findall(r"^(?:local)?rule train:", output, flags=re.MULTILINE)) == 1, output[-3000:]
    assert len(re.findall(r"^(?:local)?rule evaluate:", output, flags=re.MULTILINE)) == 1
    assert (workdir / "logs" / "smoke_grouped" / "train" / "baseline" / "seeds0-1.log").stat().st_size > 0
    seed0, seed1 = (json.loads((workdir / target).read_text()) for target in targets)
    assert (seed0["seed"], seed1["seed"]) == (0, 1)
    alone = json.loads((_results(workdir) / "metrics" / "baseline" / "seed0.json").read_text())
    assert seed0["top1"] == alone["top1"] and seed0["per_class_top1"] == alone["per_class_top1"]


@pytest.mark.slow  # four jobs more on make test's longest path; the diagnostics-enabled run below covers every method
def test_diagnostics_of_added_images_are_a_row_per_method(smoke_run):
    """Not yet part of the default target (it would add two jobs per method to the demo): asked for by name."""
    workdir, _ = smoke_run
    methods = ["retrieve_text", "gen_classname"]
    snakemake(workdir, *[f"results/smoke/diagnostics/{method}.csv" for method in methods])
    for method in methods:
        row = pd.read_csv(_results(workdir) / "diagnostics" / f"{method}.csv").iloc[0]
        added = pd.read_csv(_results(workdir) / "added" / method / "manifest.csv")
        assert row["method"] == method and row["n_added"] == len(added)
        assert 0 <= row["label_agreement"] <= 1 and -1 <= row["clip_score"] <= 1
        assert row["fd_clip_train"] >= 0 and row["fd_clip_val"] >= 0
        assert all(0 <= row[name] <= 1 for name in ("precision", "recall", "coverage")) and row["density"] >= 0
        assert row["vendi"] >= 1


def test_a_hub_token_in_the_environment_is_never_written_down(smoke_run):
    workdir, _ = smoke_run
    leaks = [
        path
        for path in workdir.rglob("*")
        if path.is_file() and path.stat().st_size < 50_000_000 and HUB_TOKEN.encode() in path.read_bytes()
    ]
    assert not leaks, f"the hub token was written to {leaks}"
    assert len(list(workdir.rglob("*.log"))) > 20  # the logs were there to search


@pytest.mark.slow  # diagnostics of every method that adds images: 18 jobs more
def test_with_diagnostics_enabled_the_summary_and_report_relate_them_to_the_gain(smoke_run):
    """diagnostics.enabled (off in the smoke and demo configs) adds diagnostics.csv to the run."""
    workdir, _ = smoke_run
    snakemake(workdir, "--config", "diagnostics={enabled: true}")
    diagnostics = pd.read_csv(_results(workdir) / "diagnostics.csv")
    assert diagnostics.method.tolist() == [method for method in METHODS if method != "baseline"]
    correlation = pd.read_csv(_results(workdir) / "gain_correlation.csv")
    assert "vendi" in correlation.diagnostic.tolist() and "n_added" not in correlation.diagnostic.tolist()
    # The smoke pool knows its images' true classes: retrieval's label precision is measured.
    precision = diagnostics.set_index("method").label_precision
    assert precision[["retrieve_text", "retrieve_image"]].between(0, 1).all()
    assert precision[["real_upper_bound", "gen_classname"]].isna().all()
    assert correlation.n_methods.between(0, len(METHODS) - 1).all()
    assert "Spearman" in (_results(workdir) / "summary.md").read_text()
    figures = sorted(path.name for path in (_results(workdir) / "figures" / "gain_vs_diagnostics").glob("*.png"))
    assert figures == sorted(f"{name}.png" for name in correlation.diagnostic)
    snakemake(workdir, "--config", "diagnostics={enabled: true}", "--report", "report_diagnostics.html")
    files = _report_files((workdir / "report_diagnostics.html").read_text())
    assert "gain_correlation.csv" in files and "vendi.png" in files
