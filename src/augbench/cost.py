"""What each method's jobs cost, from the record each job writes of what it used (augbench.usage).

That record (a file in the columns of a Snakemake benchmark file, which runs made before
it still have) lies at ``<root>/<rule>/<method>/<job>.tsv`` for a method's own jobs and
at ``<root>/<rule>/<job>.tsv`` for shared ones (embedding and screening the pool, the mini-world's
pre-training), which a user with precomputed embeddings or pretrained models does not
pay, so they are listed apart. CPU hours are the jobs' CPU time; GPU hours are the wall
time of the jobs of GPU rules times the GPUs each asked for (on a machine without GPUs,
those jobs ran on the CPU: the figure is then the GPU time they would hold on a cluster).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

COLUMNS = ["owner", "jobs", "wall_hours", "cpu_hours", "gpu_hours", "added_images", "gpu_hours_per_1k_added"]


def experiment_benchmarks(root: str | Path, methods: list[str], seeds: list[int]) -> list[str]:
    """The benchmark files under an experiment's folder that belong to its current config: every
    shared job's, and each method's own for the methods of the registry (a training or
    evaluation job's only for the seeds the config lists: ``seed<n>.tsv`` for a job of one seed,
    ``seeds<n>-<m>-....tsv`` for a job of several, classifier.seeds_in_one_job). What an earlier config of the same
    experiment ran for other methods or seeds stays on disk but is not costed."""
    files = []
    for path in sorted(Path(root).glob("*/**/*.tsv")):
        parts = path.relative_to(root).parts
        if len(parts) > 2 and parts[1] not in methods:
            continue
        job_seeds = re.fullmatch(r"seeds?(\d+(?:-\d+)*)\.tsv", parts[-1])
        if job_seeds and not {int(seed) for seed in job_seeds.group(1).split("-")} <= set(seeds):
            continue
        files.append(str(path))
    return files


def read_benchmark(path: str | Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one job; a rerun overwrites its file, so the last attempt counts."""
    frame = pd.read_csv(path, sep="\t")
    return float(frame["s"].iloc[-1]), float(pd.to_numeric(frame["cpu_time"], errors="coerce").fillna(0).iloc[-1])


def job_costs(paths: list[str], roots: str | list[str], methods: list[str], gpus: dict[str, int]) -> pd.DataFrame:
    """One row per job: rule, owner (a method, or "shared: <rule>"), wall, CPU and GPU hours
    (``gpus``: a job's GPUs by ``rule/method``, else by rule).

    Each path lies under one of ``roots``: the experiment's, or the one for jobs whose outputs
    outlive an experiment (pre-trained models, which another experiment reuses).
    """
    roots = [Path(root) for root in ([roots] if isinstance(roots, str) else roots)]
    rows = []
    for path in paths:
        root = next((root for root in roots if Path(path).is_relative_to(root)), None)
        if root is None:
            raise ValueError(f"benchmark file {path} lies under none of {[str(root) for root in roots]}")
        parts = Path(path).relative_to(root).parts
        rule = parts[0]
        owner = parts[1] if len(parts) > 2 and parts[1] in methods else f"shared: {rule}"
        wall, cpu = read_benchmark(path)
        rows.append(
            {
                "rule": rule,
                "owner": owner,
                "wall_hours": wall / 3600,
                "cpu_hours": cpu / 3600,
                # A method's own count (personalise/<method>) before its rule's.
                "gpu_hours": wall / 3600 * gpus.get(f"{rule}/{owner}", gpus.get(rule, 0)),
            }
        )
    return pd.DataFrame(rows, columns=["rule", "owner", "wall_hours", "cpu_hours", "gpu_hours"])


def cost_table(jobs: pd.DataFrame, methods: list[str], added_images: dict[str, int]) -> pd.DataFrame:
    """Per method (in registry order) and then per shared rule: jobs, hours, and GPU hours per 1,000 added images."""
    totals = jobs.groupby("owner", sort=False).agg(
        jobs=("rule", "size"),
        wall_hours=("wall_hours", "sum"),
        cpu_hours=("cpu_hours", "sum"),
        gpu_hours=("gpu_hours", "sum"),
    )
    owners = [m for m in methods if m in totals.index] + sorted(o for o in totals.index if o not in methods)
    table = totals.loc[owners].reset_index()
    table["added_images"] = [added_images.get(owner, 0) for owner in table.owner]
    per_1k = table.gpu_hours / (table.added_images / 1000)
    table["gpu_hours_per_1k_added"] = per_1k.where(table.added_images > 0)
    return table[COLUMNS]
