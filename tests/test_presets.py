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
PRESETS += ["imagenet10-generators"]  # four of the study's methods on SD 1.4, SD 2.1, SDXL, SD3.5 and FLUX.1
# What each preset reads: the dataset's trees (Caltech-256 is one tree that a job splits).
STUB_PATHS = {
    "imagenet10": ["data/imagenet/train", "data/imagenet/val"],
    "imagenet": ["data/imagenet/train", "data/imagenet/val"],
    "caltech256": ["data/caltech256/256_ObjectCategories"],
    "imagenet10-relaion": ["data/imagenet/train", "data/imagenet/val", "data/relaion2b-en/shards"],
    "imagenet10-datacomp": ["data/datacomp1b/metadata", "data/imagenet/train", "data/imagenet/val"],
    "imagenet10-generators": ["data/imagenet/train", "data/imagenet/val", "data/pool/manifest.csv"],
}
# The datasets unmet-promise (Geng et al. 2024) used besides ImageNet, read through torchvision.
FINE_GRAINED = {"dtd": "DTD", "flowers102": "Flowers102", "aircraft": "FGVCAircraft", "cars": "StanfordCars"}
STUB_PATHS |= dict.fromkeys(FINE_GRAINED, ["data/torchvision"])


# The shifted test sets the ImageNet presets evaluate on (trees read by the evaluation jobs).
SHIFTED_SETS = {
    "imagenet_v2": "data/imagenetv2-matched-frequency-format-val",
    "imagenet_sketch": "data/imagenet-sketch/sketch",
    "imagenet_r": "data/imagenet-r",
    "imagenet_a": "data/imagenet-a",
}


def stub_data_root(workdir: Path, preset: str = "imagenet10") -> None:
    """What a dry run needs of the data (python -m augbench.stub), and the shipped class list."""
    made = make_stub(str(REPO / "configs" / f"{preset}.yaml"), str(workdir))
    shifted = list(SHIFTED_SETS.values()) if preset in ("imagenet10", "imagenet", "imagenet10-generators") else []
    pool = [] if "-" in preset else ["data/pool/manifest.csv"]  # the pools that exist name their own
    assert sorted(path.relative_to(workdir).as_posix() for path in made) == sorted(STUB_PATHS[preset] + pool + shifted)
    (workdir / "resources").symlink_to(REPO / "resources")


def registry_of(config: dict) -> dict:
    """A config's methods: its own entries merged into the registry file it names, if it names one."""
    if not config.get("methods_file"):
        return config["methods"]
    return study.merge_registry(study.read_registry(config["methods_file"]), config["methods"])


def _job_counts(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:") :]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_dry_run_through_the_slurm_profile_needs_no_data(preset, planned):
    configfile = REPO / "configs" / f"{preset}.yaml"
    config = yaml.safe_load(configfile.read_text())
    config["methods"] = registry_of(config)
    counts = _job_counts(planned(f"configs/{preset}.yaml"))
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
PLANS += ["configs/imagenet10-generators.yaml"]  # methods on models of their own


def dry_run_plan(workdir: Path, plan: str) -> str:
    """The jobs and shell commands a dry run of ``plan`` prints through the SLURM profile (a preset
    on a stub data root); one dry run a plan serves every test of it (conftest's planned)."""
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
    result = snakemake(workdir, "-n", "-p", profile=REPO / "profiles" / "slurm", configfile=configfile)
    return result.stdout + result.stderr


@pytest.mark.parametrize("plan", PLANS)
def test_the_cost_table_reads_the_benchmark_of_every_job_that_writes_one(plan, planned, tmp_path):
    """The aggregate costs the benchmark files under the experiment's folder (and pre-training's
    where present): every benchmark a job writes must lie where it looks and in the layout it reads."""
    from augbench import cost

    output = planned(plan)
    written = set(re.findall(r"python -m augbench.usage --record (\S+)", output))
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


def test_the_summary_reads_what_every_personalisation_job_learned(planned):
    output = planned("configs/smoke.yaml")
    learned = re.findall(r"python -m augbench.personalise .*--out (\S+)", output)
    aggregate = re.search(r"python -m augbench.aggregate .*", output).group(0)
    named = re.findall(r"--learned (\S+)=(\S+)", aggregate)
    assert len(learned) == 3 and sorted(path for _, path in named) == sorted(learned)  # 2 + 1 shards
    assert all(path.split("/")[-2] == method for method, path in named)


def test_the_generator_preset_runs_each_method_on_its_own_model(planned):
    """Each generation method's jobs (generation and personalisation) load its own model and backend."""
    config = yaml.safe_load((REPO / "configs" / "imagenet10-generators.yaml").read_text())
    output = planned("configs/imagenet10-generators.yaml")
    models, sampled = {}, {}
    for command in re.findall(r"python -m augbench\.(?:generate|personalise) .*", output):
        method = (re.search(r"--method (\S+)", command) or re.search(r"--out \S+/personalised/([^/]+)/", command))[1]
        options = dict(re.findall(r"--(model|backend|dtype|scheduler|batch-size) (\S+)", command))
        models.setdefault(method, set()).add((options["model"], options["backend"]))
        if "--method" in command:
            sampled.setdefault(method, set()).add((options["dtype"], options.get("scheduler"), options["batch-size"]))
    generated = {name: params for name, params in config["methods"].items() if params["kind"] == "generate"}
    assert set(models) == set(sampled) == set(generated)
    for name, params in generated.items():
        diffusion = {**config["diffusion"], **params.get("diffusion", {})}
        # Personalisation learns on the model that generation samples.
        assert models[name] == {(diffusion["model"], diffusion["backend"])}, name
        scheduler = params.get("scheduler", "dpm_solver")
        assert sampled[name] == {(diffusion["dtype"], scheduler, str(diffusion["batch_size"]))}, name
        assert (diffusion["backend"] in ("sd3", "flux")) == (scheduler == "flow_euler")
    assert len({model for ((model, _),) in models.values()}) == 5
    # The sweep: the same four methods on every model.
    methods = {
        name.rsplit("_", 1)[0] if name.endswith(("_sd21", "_sdxl", "_sd35", "_flux")) else name for name in generated
    }
    assert methods == {"gen_classname", "gen_clip_templates", "gen_img2img", "gen_dm_finetune"}
    assert len(generated) == 20


def test_the_demo_evaluates_on_its_shifted_set_and_diagnoses_every_method_that_adds_images(planned):
    output = planned("config.yaml")
    for command in re.findall(r"python -m augbench.evaluate .*", output):
        assert "--evaluation-set web=resources/miniworld/val_web/manifest.csv" in command
    counts = _job_counts(output)
    assert counts["embed_added"] == counts["diagnose_added"] == 13  # every method but the baseline
    (aggregate,) = re.findall(r"python -m augbench.aggregate .*", output)
    assert "--diagnostics" in aggregate


@pytest.mark.parametrize("preset", FINE_GRAINED)
def test_a_fine_grained_preset_lists_its_official_splits_through_torchvision(preset, tmp_path):
    configfile = REPO / "configs" / f"{preset}.yaml"
    config = yaml.safe_load(configfile.read_text())
    methods = registry_of(config)
    stub_data_root(tmp_path, preset)
    output = snakemake(tmp_path, "-n", "-p", profile=None, configfile=configfile).stdout
    counts = _job_counts(output)
    assert counts["train"] == counts["evaluate"] == len(methods) * len(config["seeds"]) == 13 * 3
    listings = re.findall(r"python -m augbench.dataset .*", output)
    assert len(listings) == counts["list_dataset"] == 2
    for listing in listings:
        assert (
            f"--root data/torchvision --classes resources/{preset}/classes.txt --torchvision {FINE_GRAINED[preset]}"
            in listing
        )
    assert any("--split test" in listing for listing in listings)
    # Every class name is distinct, as prompts and labels need.
    names = (REPO / "resources" / preset / "classes.txt").read_text().splitlines()
    assert len(names) == len(set(names)) == {"dtd": 47, "flowers102": 102, "aircraft": 100, "cars": 196}[preset]


def test_the_imagenet_presets_evaluate_every_model_on_the_four_shifted_sets(planned):
    for preset in ("imagenet10", "imagenet"):
        sets = yaml.safe_load((REPO / "configs" / f"{preset}.yaml").read_text())["evaluation_sets"]
        assert {name: entry["images"] for name, entry in sets.items()} == SHIFTED_SETS
        assert sets["imagenet_sketch"].get("classes") is None  # all 1,000 classes compete on V2 and Sketch
    commands = re.findall(r"python -m augbench.evaluate .*", planned("configs/imagenet10.yaml"))
    assert commands
    for command in commands:
        for name, images in SHIFTED_SETS.items():
            assert f"--evaluation-set {name}={images}" in command
        assert command.count("--evaluation-set-classes") == 3


def test_the_shifted_sets_class_lists_name_imagenet_classes(tmp_path):
    from augbench.evaluate import read_evaluation_set, set_class_labels

    classes = str(REPO / "resources" / "imagenet" / "classes.tsv")
    folders, labels = set_class_labels(str(REPO / "resources" / "imagenet" / "imagenet_v2_folders.tsv"), classes)
    assert folders[:3] == ["0", "1", "2"] and folders[-1] == "999" and labels == list(range(1000))
    # ImageNet-R's 200 start with goldfish (1), great white shark (2), hammerhead (4), stingray (6);
    # ImageNet-A's with stingray (6), goldfinch (11), junco (13), American robin (15).
    for name, first in (("imagenet_r_wnids.txt", [1, 2, 4, 6]), ("imagenet_a_wnids.txt", [6, 11, 13, 15])):
        folders, labels = set_class_labels(str(REPO / "resources" / "imagenet" / name), classes)
        assert len(set(labels)) == 200 and labels == sorted(labels) and labels[:4] == first
    # An ImageNet-R tree of two of its classes: its labels are ImageNet's.
    for wnid in ("n01443537", "n01484850"):
        (tmp_path / "imagenet-r" / wnid).mkdir(parents=True)
        (tmp_path / "imagenet-r" / wnid / "a.jpg").write_bytes(b"")
    r_list = tmp_path / "two.txt"
    r_list.write_text("n01443537\nn01484850\n")
    evaluation_set = read_evaluation_set("imagenet_r", str(tmp_path / "imagenet-r"), classes, str(r_list))
    assert evaluation_set.images.label.tolist() == [1, 2] and evaluation_set.classes == [1, 2]
