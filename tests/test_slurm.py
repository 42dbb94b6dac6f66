"""The smoke config through profiles/slurm on a real single-node SLURM (tests/slurm/single_node.sh).

The profile is used as shipped except for what a 2-CPU test node cannot give (CPUs per
GPU job) and what a cluster without accounting needs (no account, squeue for status).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from helpers import REPO, snakemake

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.slurm]

SCRIPT = REPO / "tests" / "slurm" / "single_node.sh"
# A real rule, a retrieval and a personalised generation: every kind of job, CPU and GPU.
METHODS = ["baseline", "retrieve_text", "gen_textual_inversion"]
# Retrieval screens the pool against the subset's and validation images' embeddings (embed_subset, embed_val).
GPU_RULES = {"pretrain_clip", "pretrain_diffusion", "embed_pool", "embed_subset", "embed_val"} | {
    "personalise",
    "generate",
    "train",
    # faiss's rules: the pool's screening and each shard's search
    "screen_pool",
    "search_pool_shard",
}


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("starting a test SLURM needs root and Debian's packages")
    subprocess.run([str(SCRIPT), "start"], check=True, capture_output=True, text=True)
    yield
    subprocess.run([str(SCRIPT), "stop"], check=True)


def test_profile_sends_gpu_rules_to_the_gpu_partition_and_results_match_a_local_run(cluster, smoke_run, tmp_path):
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    # The test node has 2 CPUs; jobs get the threads the local run gave them, so numbers can match.
    for resources in profile["set-resources"].values():
        resources["cpus_per_gpu"] = 1
    profile["set-threads"] = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())["set-threads"]
    profile.update(
        {
            "slurm-no-account": True,
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 2,
            # Jobs of seconds: the default 10 s between status checks would be most of the test's time.
            "seconds-between-status-checks": 2,
            "slurm-keep-successful-logs": True,
            "latency-wait": 5,
            # No job may ask for more CPUs than the test node has: SLURM would hold it forever.
            "max-threads": 2,
        }
    )
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    workdir = tmp_path / "run"
    targets = [f"results/smoke/metrics/{method}/seed0.json" for method in METHODS]
    # A job SLURM cannot place waits forever; the budget for this test is 10 minutes.
    result = snakemake(workdir, *targets, profile=tmp_path / "profile", timeout=900)
    output = result.stdout + result.stderr

    # Every job went through SLURM: each has a SLURM job id and a SLURM log.
    logs = sorted((workdir / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"))
    jobs = {int(path.stem): path.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0] for path in logs}
    assert len(jobs) >= 10, output[-3000:]
    assert "SLURM jobid" in output or "SLURM run ID" in output
    rules = {re.sub(r"_wildcards_.*", "", folder.removeprefix("rule_")) for folder in jobs.values()}
    # (retrieve itself is a local rule: it copies the merge of the pool shards' candidates)
    assert {"miniworld_data", "subset", "merge_pool_shards", "evaluate"} | GPU_RULES <= rules

    # GPU rules asked SLURM for a GPU on the gpu partition; the others stayed on cpu without one.
    for job_id, folder in jobs.items():
        rule = re.sub(r"_wildcards_.*", "", folder.removeprefix("rule_"))
        details = subprocess.run(
            ["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, check=True
        ).stdout
        partition = re.search(r"Partition=(\S+)", details).group(1)
        asks_gpu = "gres:gpu:1" in details
        assert (partition, asks_gpu) == (("gpu", True) if rule in GPU_RULES else ("cpu", False)), (rule, details)

    # The same numbers as the local run of the same config.
    local_dir, _ = smoke_run
    for target in targets:
        on_slurm = json.loads((workdir / target).read_text())
        local = json.loads((local_dir / target).read_text())
        assert on_slurm["top1"] == local["top1"] and on_slurm["per_class_top1"] == local["per_class_top1"], target
