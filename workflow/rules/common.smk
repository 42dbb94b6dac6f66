# The study's logic lives in augbench.study; this file wires its answers into the rules.
import json
import re
from pathlib import Path

from augbench.study import PRETRAIN_BENCHMARKS, Study, check_duplicate_keys, cli_options

check_duplicate_keys(workflow.configfiles)
# Study checks the config whole (schema, combinations, paths, names) and fills its defaults in.
STUDY = Study(config)
PATHS = STUDY.paths
RESULTS, LOGS, BENCHMARKS = PATHS.results, PATHS.logs, PATHS.benchmarks
METHODS = STUDY.methods
MINIWORLD = STUDY.miniworld
SEEDS = STUDY.seeds
# A training or evaluation job runs one seed ({seed}) or all of them (classifier.seeds_in_one_job).
SEEDS_OF_JOB, SEED_JOB = STUDY.seed_job()
GPUS = STUDY.gpus()
ENV = "../../envs/augbench.yaml"
# clip-retrieval pins numpy<2 and img2dataset is optional: their rules have their own envs.
CLIP_SERVICE_ENV = "../../envs/clip-retrieval.yaml"
DOWNLOAD_ENV = "../../envs/download.yaml"
# Rules that may run in another Python (service.python, download.python) import augbench from here.
SOURCE = Path(workflow.basedir) / "src"
CLASSES = config["dataset"]["classes"]

methods_of = STUDY.methods_of
benchmark_of = STUDY.benchmark


def alternation(names):
    """A wildcard regex matching exactly these names (and nothing if there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    method=alternation(METHODS),
    seed=r"\d+",


def each_seed(pattern):
    """A per-seed path for each seed a training or evaluation job runs."""
    return expand(pattern, seed=SEEDS_OF_JOB, allow_missing=True)


def job_seeds(wildcards):
    return [wildcards.seed] if "seed" in wildcards.keys() else SEEDS


def grows(amount):
    """A resource that grows with each attempt, as a job killed for memory or time (--retries) needs more."""
    return lambda wildcards, attempt: amount * attempt


def clip_inputs(wildcards=None):
    return STUDY.clip_files()


def diffusion_inputs(wildcards):
    """The local pipeline folder of a method's generation or personalisation jobs."""
    return STUDY.diffusion_files(wildcards.method)


def added_images(wildcards):
    """The added-image manifest of a method, if it adds any."""
    if not STUDY.adds_images(wildcards.method):
        return []
    return [STUDY.added_manifest(wildcards.method)]


def clip_filter_inputs(wildcards):
    return STUDY.clip_filter_inputs(wildcards.method)


def zero_shot_inputs(wildcards):
    return STUDY.zero_shot_inputs(wildcards.method)


def copy_references(wildcards=None):
    return STUDY.copy_references()


# Retrieval from the pool's shards (workflow/rules/retrieve.smk).
def searched_kind(wildcards):
    return "captions" if METHODS[wildcards.method]["index"] == "caption" else "images"


def searched_embeddings(wildcards):
    return STUDY.pool_shard_embeddings(searched_kind(wildcards), wildcards.shard)


def query_embeddings(wildcards):
    if METHODS[wildcards.method]["query"] == "image":
        return PATHS.subset_embeddings
    return PATHS.class_prompts


def deepened_shards(method, rounds):
    """The shards each of the first ``rounds`` merges asked to search deeper (read once they ran)."""
    asked = []
    for round_ in range(rounds):
        merged = checkpoints.merge_pool_shards.get(method=method, round=round_).output[
            0
        ]
        asked.append(json.loads((Path(merged) / "status.json").read_text())["deepen"])
    return asked


def shard_candidates(wildcards):
    """Each shard's latest candidates as of a round: round 0's, or a later round's that searched it deeper."""
    from augbench.sharded_retrieval import latest_rounds

    asked = deepened_shards(wildcards.method, int(wildcards.round))
    latest = latest_rounds(STUDY.pool_jobs, asked)
    return [
        f"{STUDY.retrieval_round(wildcards.method, latest[shard])}/shard{shard}.npz"
        for shard in range(STUDY.pool_jobs)
    ]


def final_merge(wildcards):
    """The merge of the first round whose candidates were deep enough."""
    round_ = 0
    while True:
        merged = checkpoints.merge_pool_shards.get(
            method=wildcards.method, round=round_
        ).output[0]
        if json.loads((Path(merged) / "status.json").read_text())["done"]:
            return merged
        round_ += 1


LOCAL_RETRIEVAL = STUDY.retrieval_methods("local", download=False)
LOCAL_RETRIEVAL += STUDY.retrieval_methods("local", download=True)


def method_options(options):
    """Params of a method's job: its options as a command line, from wildcards only (not input),
    so Snakemake records them and reruns a job when they change."""
    return lambda wildcards: cli_options(options(wildcards.method))


def print_summary():
    summary = Path(f"{RESULTS}/summary.md")
    if summary.exists():
        print(f"\nResults of experiment {config['experiment']!r} ({summary}):\n")
        print(summary.read_text())
